"""The assignment solver: scipy's own extension, loaded without ``scipy.optimize``'s package."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_solver

from streamrec import assignment


def test_the_solver_is_scipys_extension_loaded_without_the_package() -> None:
    code = (
        "import sys\n"
        "from streamrec.assignment import linear_sum_assignment, solver\n"
        "import numpy as np\n"
        "rows, cols = linear_sum_assignment(np.array([[4.0, 1.0], [2.0, 8.0]]))\n"
        "assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0], (rows, cols)\n"
        "assert solver().__module__ == 'scipy.optimize._lsap', solver().__module__\n"
        "assert 'scipy' not in sys.modules and 'scipy.optimize' not in sys.modules\n"
        "from scipy.optimize import linear_sum_assignment as package\n"  # still imports after
        "assert package(np.array([[4.0, 1.0], [2.0, 8.0]]))[1].tolist() == [1, 0]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (4, 7), (9, 2), (20, 20)])
def test_it_gives_scipys_assignment(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        cost = rng.random(shape) * rng.choice([1.0, 1e3])
        ours, theirs = assignment.linear_sum_assignment(cost), scipy_solver(cost)
        assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])


def test_without_the_extension_file_the_package_function_is_used(monkeypatch) -> None:
    monkeypatch.setattr(assignment.importlib.util, "find_spec", lambda name: None)
    assignment.solver.cache_clear()
    try:
        assert assignment.solver() is scipy_solver
    finally:
        assignment.solver.cache_clear()
