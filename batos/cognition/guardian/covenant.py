"""The Persistence Covenant: a path-sensitive data-flow check over one method.

Every path that mutates ``self`` (an attribute, an augmented attribute, a
container held by ``self``) must set ``self._p_changed = True`` after its last
mutation and before it returns or falls off the end, or ZODB never learns of
the change. Mutations inside ``if``/``for``/``while``/``with``/``try``/``match``
are followed into their blocks.
"""

from __future__ import annotations

import ast
from typing import Iterable

# Methods that mutate the container they are called on.
MUTATORS = frozenset(
    {
        "append", "extend", "insert", "remove", "pop", "clear", "update", "setdefault", "popitem",
        "add", "discard", "sort", "reverse", "difference_update", "intersection_update",
        "symmetric_difference_update", "appendleft", "extendleft", "popleft", "rotate",
    }
)
MARK = "self._p_changed = True"


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
