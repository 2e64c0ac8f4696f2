"""The safety policy: one ``visit_<Node>`` per rule, in the manner of RestrictedPython.

An import allow-list of pure standard library modules, no dynamic code, no
reflection through underscore names or frame objects, no ``global`` or
``nonlocal``. Errors are collected as "Line N: ..." so one report says
everything that is wrong.
"""

from __future__ import annotations

import ast
import re
import string

ALLOWED_IMPORTS = frozenset(
    {
        "math", "cmath", "datetime", "json", "re", "collections", "itertools", "functools", "operator",
        "statistics", "string", "random", "hashlib", "time", "decimal", "fractions", "textwrap",
        "bisect", "heapq", "calendar", "copy", "dataclasses", "enum", "numbers", "unicodedata",
        "difflib", "zlib", "base64", "binascii", "uuid", "typing", "array",
    }
)
FORBIDDEN_NAMES = frozenset(
    {
        "eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "input",
        "breakpoint", "help", "exit", "quit", "os", "sys", "subprocess", "socket", "ctypes",
        "importlib", "builtins",
    }
)
_DUNDER = re.compile(r"^__\w+__$")
REFLECTION_CALLS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
# Attributes without an underscore that still reach frames, code or globals.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code",
        "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "co_code",
        "func_globals", "mro", "format_map", "Formatter", "vformat", "get_field", "load_module",
        "im_func", "im_self", "func_code",
    }
)


class SafetyPolicy(ast.NodeVisitor):
    """One rule per node type; errors are collected, never raised."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, node: ast.AST, message: str) -> None:
        self.errors.append(f"Line {getattr(node, 'lineno', '?')}: {message}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            root = alias.name.split(".")[0]
            if root not in ALLOWED_IMPORTS:
                self.error(node, f"import of {alias.name!r} is not allowed")
            if alias.asname and alias.asname.startswith("_"):
                self.error(node, f"import alias {alias.asname!r} starts with an underscore")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.error(node, "relative imports are not allowed")
            return
        root = (node.module or "").split(".")[0]
        if root not in ALLOWED_IMPORTS:
            self.error(node, f"import from {node.module!r} is not allowed")
        for alias in node.names:
            if alias.name == "*":
                self.error(node, f"'from {node.module} import *' is not allowed")
            elif alias.name.startswith("_") or (alias.asname or "").startswith("_"):
                self.error(node, f"importing the private name {alias.name!r} is not allowed")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            self.error(node, f"use of {node.id!r} is not allowed")
        elif node.id.startswith("__"):
            self.error(node, f"use of the dunder name {node.id!r} is not allowed")
        elif node.id == "self" and isinstance(node.ctx, (ast.Store, ast.Del)):
            self.error(node, "rebinding 'self' is not allowed")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_"):
            is_mark = node.attr == "_p_changed" and isinstance(node.value, ast.Name) and node.value.id == "self"
            if not is_mark:
                self.error(node, f"access to the private attribute {node.attr!r} is not allowed")
        elif node.attr in FORBIDDEN_ATTRIBUTES:
            self.error(node, f"access to {node.attr!r} is not allowed (it reaches frames, code or globals)")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in REFLECTION_CALLS:
            name = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                self.error(node, f"{func.id}() needs a constant attribute name")
            elif name.value.startswith("_") or name.value in FORBIDDEN_ATTRIBUTES:
                self.error(node, f"{func.id}() of {name.value!r} is not allowed")
        if isinstance(func, ast.Attribute) and func.attr == "format":
            template = func.value if not (isinstance(func.value, ast.Name) and func.value.id == "str") else (node.args[0] if node.args else None)
            if not (isinstance(template, ast.Constant) and isinstance(template.value, str)):
                self.error(node, "str.format() needs a constant template (templates can walk attributes)")
            else:
                self._check_template(node, template.value)
        self.generic_visit(node)

    def _check_template(self, node: ast.AST, template: str) -> None:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
        except ValueError as exc:
            self.error(node, f"bad format template: {exc}")
            return
        for name in fields:
            parts = re.split(r"[.\[]", name)[1:]
            if any(p.lstrip().startswith("_") or p.rstrip("]") in FORBIDDEN_ATTRIBUTES for p in parts):
                self.error(node, f"format field {name!r} walks into private attributes")

    def visit_Constant(self, node: ast.Constant) -> None:
        # "__class__", "__globals__"... as strings only serve reflection
        # (getattr, type(name, bases, dict), frame dictionaries).
        if isinstance(node.value, str) and _DUNDER.match(node.value):
            self.error(node, f"the dunder string {node.value!r} is not allowed")

    def visit_Global(self, node: ast.Global) -> None:
        self.error(node, "'global' is not allowed")

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.error(node, "'nonlocal' is not allowed")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.error(node, "class definitions inside a method are not allowed")

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.error(node, "async functions are not allowed")

    def visit_Await(self, node: ast.Await) -> None:
        self.error(node, "'await' is not allowed")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.decorator_list:
            self.error(node, f"decorators on {node.name!r} are not allowed")
        if node.name.startswith("_"):
            self.error(node, f"function name {node.name!r} starts with an underscore")
        self.generic_visit(node)

    def visit_arguments(self, node: ast.arguments) -> None:
        params = node.posonlyargs + node.args + node.kwonlyargs + [a for a in (node.vararg, node.kwarg) if a]
        for index, arg in enumerate(params):
            if arg.arg.startswith("_") or arg.arg in FORBIDDEN_NAMES:
                self.error(arg, f"parameter name {arg.arg!r} is not allowed")
            if arg.arg == "self" and index > 0:
                self.error(arg, "a second parameter named 'self' shadows the receiver")
        self.generic_visit(node)
