"""Optimal assignment (scipy's ``linear_sum_assignment``), loaded in a millisecond.

``from scipy.optimize import linear_sum_assignment`` runs the whole ``scipy.optimize`` package
import (scipy.linalg, scipy.sparse, OpenBLAS): 0.35-0.7 s of the GIL on a small box, paid at
start-up or by the first detection round with tracks to match. The solver itself is one
compiled extension, ``scipy/optimize/_lsap``, that needs only numpy, so it is loaded from its
file; the package's function is that extension's (``scipy.optimize`` re-exports it). Should a
scipy release move or change it, the package import is the fallback.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

Solver = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

#: the extension's module name: its init function (``PyInit__lsap``) is named after the last part
_NAME = "scipy.optimize._lsap"


@functools.cache
def solver() -> Solver:
    """scipy's ``linear_sum_assignment``, from its extension file when it can be found."""
    spec = importlib.util.find_spec("scipy")  # finds the package without importing it
    for folder in (spec and spec.submodule_search_locations) or ():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / "optimize" / f"_lsap{suffix}"
            if not path.is_file():
                continue
            ext = importlib.util.spec_from_file_location(_NAME, path)
            if ext is None or ext.loader is None:
                continue
            try:
                module = importlib.util.module_from_spec(ext)
                ext.loader.exec_module(module)
                return module.linear_sum_assignment
            except (ImportError, AttributeError):
                break  # built against another numpy, or renamed: take the package's
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the least-cost assignment of a (rows, cols) cost matrix."""
    return solver()(cost)
