"""The Persistence Covenant: a path-sensitive data-flow check over one method.

Every path that changes a value held by ``self`` in place (``self.items.append(x)``,
``self.totals[k] += 1``, an alias of either) must set ``self._p_changed = True``
after its last such change and before it returns or falls off the end, or ZODB
never learns of the change. Assigning a slot (``self.count = 0``,
``self.count += 1``) needs no mark: it goes through the object's ``__setattr__``,
which ZODB notices by itself. Mutations inside ``if``/``for``/``while``/``with``/``try``/``match``
are followed into their blocks.

Mutations through another name are followed too: an alias of a slot
(``items = self.items``, ``(items := self.items)``), an alias of ``self``
(``me = self``), an unbound method of a container type
(``list.append(self.xs, v)``) and the standard library's in-place functions
(``heapq.heappush(self.heap, x)``). That a mutating method is only ever called
where it is named (never bound to a name or passed on) is the safety policy's
rule, so the mutation always shows up in the statement that performs it.
"""

from __future__ import annotations

import ast
from typing import Iterable

# Methods that mutate the container they are called on.
MUTATORS = frozenset(
    {
        "append", "extend", "insert", "remove", "pop", "clear", "update", "setdefault", "popitem",
        "add", "discard", "sort", "reverse", "difference_update", "intersection_update",
        "symmetric_difference_update", "appendleft", "extendleft", "popleft", "rotate", "subtract",
        "byteswap", "frombytes", "fromlist", "fromunicode",
    }
)
# Functions of the allowed modules that mutate their first argument in place.
IN_PLACE = frozenset(
    {
        "heappush", "heappop", "heapify", "heapreplace", "heappushpop", "insort", "insort_left", "insort_right",
        "shuffle", "setitem", "delitem", "iadd", "iand", "iconcat", "ifloordiv", "ilshift", "imatmul", "imod",
        "imul", "ior", "ipow", "irshift", "isub", "itruediv", "ixor",
    }
)
# Container types whose unbound methods mutate their first argument:
# list.append(self.xs, v) is self.xs.append(v).
CONTAINER_TYPES = frozenset(
    {"list", "dict", "set", "bytearray", "deque", "defaultdict", "OrderedDict", "Counter", "ChainMap", "array"}
)
MARK = "self._p_changed = True"


class _Names:
    """What the names of one method stand for, as far as the covenant cares."""

    def __init__(self) -> None:
        self.receiver: set[str] = {"self"}  # self and names bound to it (me = self)
        self.held: set[str] = set()  # names bound to values held by self (items = self.items)
        self.types: set[str] = set()  # names bound to container types (L = list)

    def rooted(self, node: ast.AST) -> bool:
        """Whether an expression like self.x, self.x[0].y, (a := self.x) or an alias of one is reached."""
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.NamedExpr)):
            node = node.value
        return isinstance(node, ast.Name) and (node.id in self.receiver or node.id in self.held)

    def is_receiver(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id in self.receiver

    def is_container_type(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in CONTAINER_TYPES or node.id in self.types
        # collections.deque, array.array; type(x) is refused by the safety policy except in comparisons
        return isinstance(node, ast.Attribute) and node.attr in CONTAINER_TYPES

    def track(self, node: ast.AST) -> None:
        """Learn the aliases bound anywhere in *node* (assignments and walruses)."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Assign):
                targets, value = sub.targets, sub.value
            elif isinstance(sub, ast.NamedExpr):
                targets, value = [sub.target], sub.value
            else:
                continue
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if self.is_receiver(value):
                self.receiver.update(names)
            elif self.rooted(value):
                self.held.update(names)
            elif self.is_container_type(value):
                self.types.update(names)


def is_mark(stmt: ast.stmt) -> bool:
    """Whether *stmt* is exactly ``self._p_changed = True``: the one write to a
    persistence attribute the safety policy lets through."""
    if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
        return False
    target = stmt.targets[0]
    return (
        isinstance(target, ast.Attribute)
        and target.attr == "_p_changed"
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
        and isinstance(stmt.value, ast.Constant)
        and stmt.value.value is True
    )


class _Mutations(ast.NodeVisitor):
    """Finds mutations of self in one statement's expressions (not nested blocks)."""

    def __init__(self, names: _Names) -> None:
        self.names = names
        self.found = False

    def _target(self, target: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._target(element)
        elif isinstance(target, ast.Starred):
            self._target(target.value)
        elif isinstance(target, ast.Attribute) and self.names.is_receiver(target.value):
            # self.slot = v (and self.n += 1) goes through the object's __setattr__,
            # which ZODB notices by itself: only a change inside a held value needs the mark
            return
        elif isinstance(target, (ast.Attribute, ast.Subscript)) and self.names.rooted(target):
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
        first = node.args[0] if node.args else None
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if isinstance(func, ast.Attribute) and func.attr in MUTATORS:
            # self.items.append(x), alias.update(...); self.method() is a call, not a mutation
            if self.names.rooted(func.value) and not self.names.is_receiver(func.value):
                self.found = True
            elif first is not None and self.names.is_container_type(func.value) and self.names.rooted(first):
                self.found = True  # list.append(self.items, x)
        elif name in IN_PLACE or name in ("setattr", "delattr"):
            # heapq.heappush(self.heap, x), operator.setitem(self.d, k, v), setattr(self, "n", 1)
            if first is not None and self.names.rooted(first):
                self.found = True
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)

    # Nested scopes: a mutation inside counts where the scope is defined.
    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.body)


def mutates(node: ast.AST) -> bool:
    """Whether *node* itself (an expression, no aliases known) changes the object."""
    return Covenant()._mutates(node)


class Covenant:
    """Path-sensitive check; state = the set of possible 'dirty' flags on entry."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.names = _Names()

    def check(self, func: ast.FunctionDef) -> list[str]:
        end = self._block(func.body, {False})
        if True in end:
            self.errors.append(f"Line {func.end_lineno}: a path through {func.name!r} mutates self and ends without `{MARK}`")
        return self.errors

    def _mutates(self, node: ast.AST) -> bool:
        finder = _Mutations(self.names)
        finder.visit(node)
        return finder.found

    def _block(self, stmts: Iterable[ast.stmt], state: set[bool]) -> set[bool]:
        for stmt in stmts:
            if not state:
                return state  # every path already left the block
            state = self._stmt(stmt, state)
        return state

    def _stmt(self, stmt: ast.stmt, state: set[bool]) -> set[bool]:
        if is_mark(stmt):
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
        if isinstance(stmt, (ast.Try, ast.TryStar)):
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
        return self._expr(stmt, state)

    def _expr(self, node: ast.AST, state: set[bool]) -> set[bool]:
        self.names.track(node)
        return {True} if self._mutates(node) else state

    def _mutates_any(self, stmts: list[ast.stmt]) -> bool:
        """Whether any statement, nested blocks included, mutates self (for a
        try body, where a handler may start, and for a nested function)."""
        for stmt in stmts:
            self.names.track(stmt)
        return any(self._mutates(stmt) for stmt in stmts)
