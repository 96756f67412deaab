"""The checked-in type stubs of the native module stay in step with it."""

from __future__ import annotations

import ast
from pathlib import Path

import zerofeed._zerofeed as native

STUB = Path(__file__).resolve().parents[1] / "python" / "zerofeed" / "_zerofeed.pyi"


def stubbed() -> dict[str, set[str]]:
    tree = ast.parse(STUB.read_text())
    names: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names[node.name] = set()
        elif isinstance(node, ast.ClassDef):
            names[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = set()
    return names


def test_every_native_function_and_class_is_stubbed():
    public = {n for n in dir(native) if not n.startswith("__")} - {"__version__"}
    assert public - set(stubbed()) == set()


def test_every_view_method_is_stubbed():
    methods = {
        n for n in dir(native.View) if not n.startswith("__") or n in ("__dlpack__", "__dlpack_device__")
    }
    assert methods - stubbed()["View"] == set()
