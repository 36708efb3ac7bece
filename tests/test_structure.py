"""The package's structure, read from the AST: no import cycle, stages independent of the graph."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "streamrec"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, known: dict[str, Path], runtime_only: bool = True) -> set[str]:
    """streamrec modules ``path`` imports, with the packages whose ``__init__`` runs too.

    With ``runtime_only``, imports under ``if TYPE_CHECKING:`` are left out (they never run).
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            targets.add(base)
            targets |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}
    found: set[str] = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b too
            prefix = ".".join(parts[:i])
            if prefix in known and prefix != name:
                found.add(prefix)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package() -> None:
    known = modules()
    graph = {name: imports(path, known) for name, path in known.items()}
    # a package's __init__ importing its own modules is how packages work, not a cycle
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_stages_know_nothing_of_the_graph_or_the_composition_root() -> None:
    known = modules()
    stages = ["detect", "embed", "match", "annotate", "output", "stage", "identity", "tracking"]
    for stage in stages:
        name = f"streamrec.pipeline.{stage}"
        used = imports(known[name], known, runtime_only=False)
        assert not used & {"streamrec.pipeline.graph", "streamrec.pipeline.build"}, name
        assert not {u for u in used if u.startswith(("streamrec.service", "streamrec.cluster"))}


# -- layers ------------------------------------------------------------------------------------

#: The layers of the package, lowest first (``docs/architecture.md`` draws them). A module
#: imports modules of its own layer and of the layers below, never of one above: at run time,
#: that is (an import for type annotations only, under ``if TYPE_CHECKING:``, is allowed). An
#: entry names a top-level module or package of ``streamrec``; "" is the package itself, whose
#: public names (``streamrec.process`` ...) are imported on first use from every layer.
#: The Frigate bridge (``service.frigate``) is a service that uses the MQTT link of ``sinks``.
LAYERS: list[tuple[str, list[str]]] = [
    ("base", ["errors", "records", "config", "media", "geometry", "version", "files", "redact",
              "logs", "progress", "telemetry", "scales", "assignment"]),
    ("sources, models", ["sources", "models"]),
    ("sinks, gallery", ["sinks", "gallery", "history"]),
    ("recognition, pipeline", ["recognition", "analyzer", "pipeline"]),
    ("tasks", ["enrolment", "evaluation", "evaluation_video", "optimize", "runner",
               "processing", "privacy"]),
    ("service", ["service"]),
    ("cluster", ["cluster"]),
    ("cli", ["cli", "cli_history", "__main__", ""]),
]  # fmt: skip


def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of a ``streamrec`` module (None: not in the table)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return next((i for i, (_, names) in enumerate(LAYERS) if top in names), None)


def runtime_imports(
    path: Path, known: dict[str, Path], package: Path = PACKAGE
) -> list[tuple[int, str, str]]:
    """(line, statement, module) of each ``streamrec`` module that ``path`` imports at run time
    (imports under ``if TYPE_CHECKING:`` are left out); the packages that run on the way
    (``a`` and ``a.b`` of ``a.b.c``) are not listed."""
    name = module_name(path, package)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            names = [f"{base}.{a.name}" for a in node.names]
            targets = [n for n in names if n in known] or [base]
        for target in targets:
            parts = target.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts:
                found.append((node.lineno, ast.unparse(node), ".".join(parts)))
    return found


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in modules() if layer_of(m) is None)
    assert not missing, f"modules not in test_structure.LAYERS (give each a layer): {missing}"


def test_layers_only_look_down() -> None:
    known = modules()
    wrong = []
    for name, path in sorted(known.items()):
        own = layer_of(name)
        for line, statement, target in runtime_imports(path, known):
            used = layer_of(target)
            if own is not None and used is not None and used > own:
                where = path.relative_to(PACKAGE.parent)
                wrong.append(
                    f"{where}:{line}: {statement}  ({LAYERS[own][0]} imports {target}, "
                    f"layer {LAYERS[used][0]})"
                )
    assert not wrong, "imports that look up a layer:\n" + "\n".join(wrong)


def test_the_layer_check_finds_an_import_that_looks_up(tmp_path: Path) -> None:
    """A module of ``gallery`` that imports the analyzer (as ``gallery/enroll.py`` did)."""
    lower = tmp_path / "streamrec" / "gallery" / "enrol.py"
    lower.parent.mkdir(parents=True)
    lower.write_text(
        "from typing import TYPE_CHECKING\n"
        "from streamrec.analyzer import FaceAnalyzer\n"
        "if TYPE_CHECKING:\n"
        "    from streamrec.cli import main\n"
    )
    known = {"streamrec.analyzer": lower, "streamrec.cli": lower, "streamrec.gallery.enrol": lower}
    found = [
        (line, target) for line, _, target in runtime_imports(lower, known, lower.parent.parent)
    ]
    assert found == [(2, "streamrec.analyzer")]  # the TYPE_CHECKING import is left out
    own, used = layer_of("streamrec.gallery.enrol"), layer_of("streamrec.analyzer")
    assert own is not None and used is not None and used > own


# -- size --------------------------------------------------------------------------------------

#: the most lines a class, and a function, of ``streamrec/`` may take (decorators included)
MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 100


def oversized(path: Path, package: Path = PACKAGE) -> list[str]:
    """The classes and functions of a file over the bounds, one line each."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            kind, bound = "class", MAX_CLASS_LINES
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            kind, bound = "function", MAX_FUNCTION_LINES
        else:
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        lines = (node.end_lineno or node.lineno) - first + 1
        if lines > bound:
            where = f"{path.relative_to(package.parent)}:{node.lineno}"
            out.append(f"{where}: {kind} {node.name}: {lines} lines (at most {bound})")
    return out


def test_no_class_or_function_is_too_long() -> None:
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in oversized(path)]
    assert not found, "too long:\n" + "\n".join(found)


def test_the_size_check_counts_lines(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "streamrec" / "probe.py"
    path.parent.mkdir()
    path.write_text(f"@staticmethod\ndef long():\n{body}\n\ndef short():\n    return 1\n")
    assert oversized(path, path.parent) == [
        f"streamrec/probe.py:2: function long: {MAX_FUNCTION_LINES + 2} lines (at most "
        f"{MAX_FUNCTION_LINES})"
    ]
