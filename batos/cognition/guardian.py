"""The guardian: static audit of generated methods before they may run.

Three stages, each collecting errors as "Line N: ..." so one report says
everything that is wrong:

1. **Extraction** takes model output as it really comes (markdown fences,
   prose around the code, the method wrapped in a class, top-level imports)
   and yields exactly one ``def <selector>(self, ...)`` plus the imports it
   needs, or a reason why not.
2. **Safety policy**: one ``visit_<Node>`` per rule, in the manner of
   RestrictedPython's transformer — an import allow-list of pure standard
   library modules, no dynamic code, no reflection through underscore names
   or frame objects, no ``global``/``nonlocal``.
3. **Persistence Covenant**, a path-sensitive data-flow check: every path that
   mutates ``self`` (an attribute, an augmented attribute, a container held by
   ``self``) must set ``self._p_changed = True`` after its last mutation and
   before it returns or falls off the end. Mutations inside ``if``/``for``/
   ``while``/``with``/``try``/``match`` are followed into their blocks.
"""

from __future__ import annotations

import ast
import re
import string
import textwrap
from dataclasses import dataclass, field
from typing import Iterable

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
# Methods that mutate the container they are called on.
MUTATORS = frozenset(
    {
        "append", "extend", "insert", "remove", "pop", "clear", "update", "setdefault", "popitem",
        "add", "discard", "sort", "reverse", "difference_update", "intersection_update",
        "symmetric_difference_update", "appendleft", "extendleft", "popleft", "rotate",
    }
)
MARK = "self._p_changed = True"


@dataclass
class AuditReport:
    selector: str | None
    source: str | None
    errors: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.errors and self.source is not None

    def feedback(self) -> str:
        return "\n".join(self.errors)


class Rejected(Exception):
    pass


# -- 1. extraction --------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START = re.compile(r"^(?:def |async def |class |import |from |@)")


def _candidates(text: str) -> list[str]:
    """Code blocks if the text has fences, else the text, trimmed to its code."""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    if blocks:
        return blocks
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _CODE_START.match(line.lstrip())]
    if not starts:
        return []  # prose only
    body = lines[starts[0] :]
    # Drop trailing prose: shrink from the end until the rest parses.
    for end in range(len(body), 0, -1):
        chunk = "\n".join(body[:end])
        try:
            ast.parse(chunk)
            return [chunk]
        except SyntaxError:
            continue
    return ["\n".join(body)]


def _first_param(func: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    params = func.args.posonlyargs + func.args.args
    return params[0].arg if params else None


def extract_method(text: str, selector: str | None = None) -> tuple[str, str]:
    """Return (selector, source) for the one method in *text*, or raise Rejected."""
    parse_errors: list[str] = []
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, list[ast.stmt]]] = []
    for chunk in _candidates(text):
        chunk = textwrap.dedent(chunk)
        try:
            tree = ast.parse(chunk)
        except SyntaxError as exc:
            parse_errors.append(f"Line {exc.lineno}: syntax error: {exc.msg}")
            continue
        imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append(node)
            elif isinstance(node, ast.ClassDef):
                functions.extend(n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
                imports.extend(n for n in node.body if isinstance(n, (ast.Import, ast.ImportFrom)))
        for func in functions:
            if (selector is None or func.name == selector) and _first_param(func) == "self":
                found.append((chunk, func, imports))
    if not found:
        if parse_errors:
            raise Rejected("; ".join(parse_errors))
        wanted = f"def {selector}(self, ...)" if selector else "a function whose first parameter is self"
        raise Rejected(f"no {wanted} found in the text")
    names = {func.name for _, func, _ in found}
    if len(found) > 1:
        raise Rejected(f"expected exactly one method, found {len(found)} ({', '.join(sorted(names))})")
    chunk, func, imports = found[0]
    lines = chunk.splitlines()
    start = (func.decorator_list[0].lineno if func.decorator_list else func.lineno) - 1
    body = textwrap.dedent("\n".join(lines[start : func.end_lineno]))
    header = "\n".join(ast.unparse(i) for i in imports)
    source = (header + "\n\n" if header else "") + body.rstrip() + "\n"
    return func.name, source


# -- 2. safety policy -------------------------------------------------------------


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


# -- 3. the Persistence Covenant --------------------------------------------------


def _rooted_at_self(node: ast.AST, aliases: set[str]) -> bool:
    """Whether an expression like self.x, self.x[0].y or an alias of one is reached."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return isinstance(node, ast.Name) and (node.id == "self" or node.id in aliases)


def _is_mark(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
        return False
    target = stmt.targets[0]
    return (
        isinstance(target, ast.Attribute)
        and target.attr == "_p_changed"
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
        and isinstance(stmt.value, ast.Constant)
        and bool(stmt.value.value)
    )


class _Mutations(ast.NodeVisitor):
    """Finds mutations of self in one statement's expressions (not nested blocks)."""

    def __init__(self, aliases: set[str]) -> None:
        self.aliases = aliases
        self.found = False

    def _target(self, target: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._target(element)
        elif isinstance(target, ast.Starred):
            self._target(target.value)
        elif isinstance(target, (ast.Attribute, ast.Subscript)) and _rooted_at_self(target, self.aliases):
            self.found = True

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._target(target)
        self.visit(node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        # An alias (n = self.count; n += 1) is left alone: for an immutable
        # value that is a rebinding, and types are unknown statically.
        self._target(node.target)
        self.visit(node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._target(node.target)
        if node.value is not None:
            self.visit(node.value)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._target(target)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in MUTATORS and _rooted_at_self(func.value, self.aliases):
            # self.items.append(x), alias.update(...); self.method() is a call, not a mutation
            if not (isinstance(func.value, ast.Name) and func.value.id == "self"):
                self.found = True
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)

    # Nested scopes: a mutation inside counts where the scope is defined.
    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.body)


class Covenant:
    """Path-sensitive check; state = the set of possible 'dirty' flags on entry."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.aliases: set[str] = set()

    def check(self, func: ast.FunctionDef) -> list[str]:
        end = self._block(func.body, {False})
        if True in end:
            self.errors.append(f"Line {func.end_lineno}: a path through {func.name!r} mutates self and ends without `{MARK}`")
        return self.errors

    def _mutates(self, node: ast.AST) -> bool:
        finder = _Mutations(self.aliases)
        finder.visit(node)
        return finder.found

    def _track_aliases(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign) and _rooted_at_self(stmt.value, self.aliases) and not (
            isinstance(stmt.value, ast.Name) and stmt.value.id == "self"
        ):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    self.aliases.add(target.id)

    def _block(self, stmts: Iterable[ast.stmt], state: set[bool]) -> set[bool]:
        for stmt in stmts:
            if not state:
                return state  # every path already left the block
            state = self._stmt(stmt, state)
        return state

    def _stmt(self, stmt: ast.stmt, state: set[bool]) -> set[bool]:
        if _is_mark(stmt):
            return {False}
        if isinstance(stmt, ast.Return):
            dirty = state | ({True} if stmt.value is not None and self._mutates(stmt.value) else set())
            if True in dirty:
                self.errors.append(f"Line {stmt.lineno}: returns after mutating self without `{MARK}`")
            return set()
        if isinstance(stmt, ast.Raise):
            return set()  # raising aborts the transaction: nothing to persist
        if isinstance(stmt, ast.If):
            state = self._expr(stmt.test, state)
            return self._block(stmt.body, state) | self._block(stmt.orelse, state)
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            head = stmt.iter if isinstance(stmt, (ast.For, ast.AsyncFor)) else stmt.test
            state = self._expr(head, state)
            loop_state = set(state)
            for _ in range(3):  # two flags: a fixed point is reached quickly
                after_body = self._expr(head, self._block(stmt.body, loop_state))
                loop_state = loop_state | after_body
            # break/continue are approximated by "any state the body can reach".
            return self._block(stmt.orelse, loop_state) | loop_state
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                state = self._expr(item.context_expr, state)
            return self._block(stmt.body, state)
        if isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
            body = self._block(stmt.body, state)
            # A handler may start anywhere in the body, so after any mutation in it.
            reachable = state | body
            if self._mutates_any(stmt.body):
                reachable |= {True}
            handlers: set[bool] = set()
            for handler in stmt.handlers:
                handlers |= self._block(handler.body, reachable)
            normal = self._block(stmt.orelse, body) | handlers
            return self._block(stmt.finalbody, normal) if stmt.finalbody else normal
        if isinstance(stmt, ast.Match):
            state = self._expr(stmt.subject, state)
            out: set[bool] = set(state)  # no case may match
            for case in stmt.cases:
                out |= self._block(case.body, state)
            return out
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return {True} if self._mutates_any(stmt.body) else state
        self._track_aliases(stmt)
        return {True} if self._mutates(stmt) else state

    def _expr(self, node: ast.AST, state: set[bool]) -> set[bool]:
        return {True} if self._mutates(node) else state

    def _mutates_any(self, stmts: list[ast.stmt]) -> bool:
        return any(self._mutates(stmt) for stmt in stmts)


# -- the whole audit ---------------------------------------------------------------


def audit(text: str, selector: str | None = None) -> AuditReport:
    """Extract, then apply the safety policy and the covenant; never raises."""
    try:
        name, source = extract_method(text, selector)
    except Rejected as exc:
        return AuditReport(selector, None, [str(exc)])
    tree = ast.parse(source)
    policy = SafetyPolicy()
    policy.visit(tree)
    errors = list(policy.errors)
    func = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name)
    if isinstance(func, ast.FunctionDef):  # async ones are already refused by the policy
        errors += Covenant().check(func)
    return AuditReport(name, source, errors)
