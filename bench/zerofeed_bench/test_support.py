"""Helpers shared by the bench's tests (importable from the installed package).

Example:
    >>> installed("numpy"), installed("no_such_module_zf")
    (True, False)

"""

from __future__ import annotations

import importlib.util


def installed(module: str) -> bool:
    """Whether ``module`` can be found (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
