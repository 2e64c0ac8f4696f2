"""Shape repairs: model output that holds the right code in the wrong shape, made a method.

People paste specifications as plain functions (``def f(numbers, k):``), and
a model answers in the shape it was shown: no ``self``, a recursive call by
bare name, a helper function beside the main one, a ``@staticmethod`` in a
class, a constant at module level. None of that is wrong code, and throwing
it away costs a whole model call. :func:`repair` reshapes it, deterministically
and without a model, into exactly one ``def <selector>(self, ...)`` with its
imports, and names every change it made, so the cycle records the repairs and
the Architect can see them.

Each repair is one small function over the parsed module; what cannot be
repaired (no function at all, or several candidates with none of the right
name) is left to the guardian, which says why in its own words.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Collection
from dataclasses import dataclass, field

from batos.cognition.guardian.covenant import MARK, Covenant, mutates
from batos.cognition.guardian.extraction import code_chunks
from batos.cognition.guardian.policy import is_constant_default


@dataclass(frozen=True)
class Repaired:
    """The method's source after the repairs and what was done; None when
    nothing needed (or allowed) repair, and the text goes to the guardian as written."""

    source: str | None
    repairs: list[str] = field(default_factory=list)


_FUNC = (ast.FunctionDef, ast.AsyncFunctionDef)
FuncDef = ast.FunctionDef | ast.AsyncFunctionDef


def repair(text: str, selector: str, methods: Collection[str] = (), intent: str | None = None,
           slots: Collection[str] | None = None) -> Repaired:
    """Reshape model output *text* into one method named *selector*.

    *methods* are the selectors the receiver already understands: a bare call
    to one of them inside a function written without ``self`` was meant for
    the receiver, as a bare recursive call was meant for the method itself.
    *intent*, when given, lets a method that keeps state keep it (:func:`_keep_accumulated`);
    *slots*, the receiver's, when given, let it create the state it adds to (:func:`_create_missing`).
    """
    for chunk in code_chunks(text):
        try:
            module = ast.parse(textwrap.dedent(chunk))
        except SyntaxError:
            continue
        found = _reshape(module, selector, set(methods), intent, slots)
        if found is not None:
            return found
    return Repaired(None)


def _reshape(module: ast.Module, selector: str, methods: set[str], intent: str | None,
             slots: Collection[str] | None) -> Repaired | None:
    repairs: list[str] = []
    imports = [n for n in module.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    functions = [n for n in module.body if isinstance(n, _FUNC)]
    classes = [n for n in module.body if isinstance(n, ast.ClassDef)]
    target, owner = _choose(functions, classes, selector)
    if target is None:
        return None
    if owner is not None:
        repairs.append(f"took {target.name} out of class {owner.name}")
        imports += [n for n in owner.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    original = target.name
    if original != selector:
        repairs.append(f"renamed {original} to {selector}")
        target.name = selector
    repairs += _drop_decorators(target)
    added_self = _ensure_self(target, repairs)
    if owner is None:
        helpers = [f for f in functions if f is not target]
        constants = [n for n in module.body if _is_constant(n, {f.name for f in functions})]
        _nest(target, helpers, constants, repairs)
    if added_self or original != selector:
        _route_calls(target, {original: selector, selector: selector} | {m: m for m in methods}, repairs)
    _drop_covenant_misuse(target, repairs)
    _drop_unused_slots(target, repairs)
    _freeze_defaults(target, repairs)
    if intent is not None:
        _keep_accumulated(target, intent, repairs)
    if slots is not None:
        _create_missing(target, set(slots) | methods, repairs)
    _mark_changes(target, repairs)
    if not repairs:
        return Repaired(None)  # already a method: the guardian extracts it with its comments intact
    header = "\n".join(ast.unparse(i) for i in imports)
    source = (header + "\n\n" if header else "") + ast.unparse(target) + "\n"
    return Repaired(source, repairs)


def _choose(functions: list[FuncDef], classes: list[ast.ClassDef], selector: str) -> tuple[FuncDef | None, ast.ClassDef | None]:
    """The function meant as the method: the one named *selector* (top level
    first, then in a class), else the only function there is; None when the
    choice would be a guess."""
    for func in functions:
        if func.name == selector:
            return func, None
    in_classes = [(f, c) for c in classes for f in c.body if isinstance(f, _FUNC) and not f.name.startswith("__")]
    for func, owner in in_classes:
        if func.name == selector:
            return func, owner
    if len(functions) == 1 and not in_classes:
        return functions[0], None
    if not functions and len(in_classes) == 1:
        return in_classes[0]
    if functions and not in_classes:
        # several top-level functions and none of the right name: the one no other calls is the entry point
        called = {n.func.id for f in functions for n in ast.walk(f)
                  if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id != f.name}  # recursion is no caller
        roots = [f for f in functions if f.name not in called]
        if len(roots) == 1:
            return roots[0], None
    return None, None


def _drop_decorators(func: FuncDef) -> list[str]:
    """A stored method is called as it is; a decorator would change that (and
    ``@classmethod``'s ``cls`` is the receiver under another name)."""
    done = [f"removed decorator @{ast.unparse(d)}" for d in func.decorator_list]
    if any(isinstance(d, ast.Name) and d.id == "classmethod" for d in func.decorator_list):
        params = func.args.posonlyargs + func.args.args
        if params and params[0].arg == "cls":
            _rename_name(func, "cls", "self")
            params[0].arg = "self"
            done.append("renamed cls to self")
    func.decorator_list = []
    return done


def _ensure_self(func: FuncDef, repairs: list[str]) -> bool:
    """Give *func* a first parameter ``self`` if it has none; whether one was added."""
    params = func.args.posonlyargs + func.args.args
    if params and params[0].arg == "self":
        return False
    func.args.args.insert(0, ast.arg(arg="self"))
    repairs.append("added self as the first parameter")
    return True


def _is_constant(node: ast.stmt, functions: set[str]) -> bool:
    """``NAME = value`` at module level that calls none of the module's functions:
    a constant the function may read (``x = f(5)`` is example usage, not a constant)."""
    return (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and not any(isinstance(n, ast.Name) and n.id in functions for n in ast.walk(node.value))
    )


def _nest(target: FuncDef, helpers: list[FuncDef], constants: list[ast.stmt], repairs: list[str]) -> None:
    """Move the module-level helpers and constants the method uses into its body,
    where a stored method can reach them (it has no module of its own)."""
    used = _names_used(target)
    wanted_helpers: list[FuncDef] = []
    frontier = list(used)
    seen: set[str] = set()
    by_name = {h.name: h for h in helpers}
    while frontier:  # helpers calling helpers
        name = frontier.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        wanted_helpers.append(by_name[name])
        frontier += _names_used(by_name[name])
    reached = used | {n for h in wanted_helpers for n in _names_used(h)}
    wanted_constants = [c for c in constants if isinstance(c, ast.Assign) and c.targets[0].id in reached]  # type: ignore[union-attr]
    if not wanted_helpers and not wanted_constants:
        return
    body = list(target.body)
    docstring = body[:1] if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str) else []
    ordered_helpers = [h for h in helpers if h in wanted_helpers]  # keep the model's order
    target.body = docstring + wanted_constants + ordered_helpers + body[len(docstring):]
    for constant in wanted_constants:
        repairs.append(f"moved constant {constant.targets[0].id} into the method")  # type: ignore[union-attr]
    for helper in ordered_helpers:
        repairs.append(f"moved helper function {helper.name} into the method")


def _names_used(func: FuncDef) -> set[str]:
    return {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _local_names(func: FuncDef) -> set[str]:
    """Names bound inside *func* (parameters, assignments, nested defs, imports): a call to one is not the receiver's."""
    bound = {a.arg for a in func.args.posonlyargs + func.args.args + func.args.kwonlyargs}
    for extra in (func.args.vararg, func.args.kwarg):
        if extra is not None:
            bound.add(extra.arg)
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, _FUNC) and node is not func:
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return bound


def _route_calls(func: FuncDef, routes: dict[str, str], repairs: list[str]) -> None:
    """Bare calls ``f(...)`` meant for the receiver become ``self.<route>(...)``:
    the function's own (old) name, and the receiver's other methods, unless a
    local name shadows them."""
    local = _local_names(func) - {func.name}
    changed: set[str] = set()
    for node in ast.walk(func):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name in routes and name not in local:
                node.func = ast.Attribute(value=ast.Name(id="self", ctx=ast.Load()), attr=routes[name], ctx=ast.Load())
                changed.add(name)
    for name in sorted(changed):
        repairs.append(f"calls to {name}(...) now go to self.{routes[name]}(...)")


def _rename_name(func: FuncDef, old: str, new: str) -> None:
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and node.id == old:
            node.id = new


def _reads_p_changed(node: ast.expr) -> bool:
    return any(isinstance(n, ast.Constant) and n.value == "_p_changed" or isinstance(n, ast.Attribute) and n.attr == "_p_changed"
               for n in ast.walk(node))


def _clears_p_changed(stmt: ast.stmt) -> bool:
    """``self._p_changed = False`` (or None, or 0): one target, a falsy constant."""
    return (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and _is_self_attribute(stmt.targets[0], "_p_changed")
            and isinstance(stmt.value, ast.Constant) and stmt.value.value in (False, None, 0))


def _misuses_p_changed(stmt: ast.stmt) -> bool:
    """``self._p_changed = False``, alone or guarded by a test of the flag: the persistence
    machinery owns the flag, and a method may only raise it. Models copy the protocol's
    first-use idiom onto it (``if not hasattr(self, "_p_changed"): self._p_changed = False``);
    such statements mean nothing, and the guardian would reject the whole method for them.
    Any other use (raising the flag, however written) is left to the guardian."""
    if isinstance(stmt, ast.If):
        return not stmt.orelse and _reads_p_changed(stmt.test) and all(_clears_p_changed(s) for s in stmt.body)
    return _clears_p_changed(stmt)


def _drop_covenant_misuse(func: FuncDef, repairs: list[str]) -> None:
    def prune(node: ast.AST) -> int:
        dropped = 0
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                kept = [s for s in block if not _misuses_p_changed(s)]
                dropped += len(block) - len(kept)
                setattr(node, name, kept or [ast.Pass()])
        return dropped + sum(prune(child) for child in ast.iter_child_nodes(node))  # what was dropped is not visited

    dropped = prune(func)
    if dropped:
        repairs.append(f"removed {dropped} statement(s) that reset _p_changed")


def _first_use_of(stmt: ast.stmt) -> str | None:
    """The slot X when *stmt* is ``if not hasattr(self, "X"): self.X = ...`` (and nothing else)."""
    if not (isinstance(stmt, ast.If) and not stmt.orelse and isinstance(stmt.test, ast.UnaryOp)
            and isinstance(stmt.test.op, ast.Not) and isinstance(call := stmt.test.operand, ast.Call)
            and isinstance(call.func, ast.Name) and call.func.id == "hasattr" and len(call.args) == 2
            and isinstance(call.args[0], ast.Name) and call.args[0].id == "self"
            and isinstance(call.args[1], ast.Constant) and isinstance(call.args[1].value, str)):
        return None
    slot = call.args[1].value
    if all(isinstance(s, ast.Assign) and len(s.targets) == 1 and _is_self_attribute(s.targets[0], slot) for s in stmt.body):
        return slot
    return None


def _is_self_attribute(node: ast.AST, slot: str) -> bool:
    return _slot(node) == slot


def _slot(node: ast.AST) -> str | None:
    """X when *node* is ``self.X``."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def _drop_unused_slots(func: FuncDef, repairs: list[str]) -> None:
    """A first-use guard in a method that otherwise never touches ``self``: models copy the
    protocol's idiom into pasted pure functions (measured: 2 of 7 bench specifications),
    which would leave an empty slot on the Architect's object. Only a guard that assigns
    a literal (an empty list, a zero), in a method with arguments of its own whose
    remaining body never mentions ``self``, is dropped: anything else may be the point
    of the method (a set-up method, state another method reads)."""
    if len(func.args.args) < 2:
        return
    for stmt in list(func.body):
        slot = _first_use_of(stmt)
        rest = [s for s in func.body if s is not stmt]
        if slot is None or not rest or not all(_is_plain_value(s.value) for s in stmt.body):  # type: ignore[attr-defined]
            continue
        if not any(isinstance(n, ast.Name) and n.id == "self" for s in rest for n in ast.walk(s)):
            func.body.remove(stmt)
            repairs.append(f"removed the first use of slot {slot}, which the method never uses")


def _is_plain_value(node: ast.expr) -> bool:
    """A value written out in full (``[]``, ``0``, ``{}``): evaluating it runs nothing."""
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def _freeze_defaults(func: FuncDef, repairs: list[str]) -> None:
    """A list default the guardian would accept as a tuple becomes that tuple. Specifications
    are pasted with ``minor=['a', 'the']``; the guardian refuses a mutable default (one
    list shared by every call), and membership, iteration and indexing read a tuple the same."""
    args = func.args
    positional = args.posonlyargs + args.args
    for names, defaults in ((positional[len(positional) - len(args.defaults):], args.defaults), (args.kwonlyargs, args.kw_defaults)):
        for i, (arg, default) in enumerate(zip(names, defaults)):
            frozen = ast.Tuple(elts=default.elts, ctx=ast.Load()) if isinstance(default, ast.List) else None
            if frozen is not None and is_constant_default(frozen):
                defaults[i] = frozen
                repairs.append(f"the default of {arg.arg} is a tuple, not a list (a list default is shared by every call)")


# words with which an intent asks a method to start its state over: then a slot set afresh on every call is the point
_STARTS_OVER = frozenset({"reset", "resets", "clear", "clears", "fresh", "replace", "replaces", "restart", "restarts",
                          "anew", "discard", "discards", "forget", "forgets"})
_EMPTY_CALLS = frozenset({"list", "dict", "set", "Counter", "defaultdict", "deque", "OrderedDict"})
# the covenant's MUTATORS that add to a container (not those that take out or reorder)
_ADDERS = frozenset({"append", "extend", "insert", "update", "add", "setdefault", "appendleft", "extendleft"})


def _is_empty(node: ast.expr) -> bool:
    """``[]``, ``{}``, ``0``, ``""``, ``set()``, ``Counter()``, ``defaultdict(int)``: a container or count with nothing in it."""
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id in _EMPTY_CALLS and not node.keywords \
            and all(isinstance(a, ast.Name) for a in node.args) and len(node.args) <= 1
    return _is_plain_value(node) and not ast.literal_eval(node)


def _adds_to(node: ast.AST, slot: str) -> bool:
    """Whether *node* adds to ``self.<slot>`` in place: a mutator call, an item store, ``+=``."""
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in _ADDERS and _is_self_attribute(n.func.value, slot):
            return True
        if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Store) and _is_self_attribute(n.value, slot):
            return True
        if isinstance(n, ast.AugAssign) and (_is_self_attribute(n.target, slot)
                                            or isinstance(n.target, ast.Subscript) and _is_self_attribute(n.target.value, slot)):
            return True
    return False


def _keep_accumulated(func: FuncDef, intent: str, repairs: list[str]) -> None:
    """``self.tally = {}`` at the top of a method that then adds to ``self.tally`` throws away,
    on every call, what the earlier calls kept; it becomes ``if not hasattr(self, "tally"):``.

    The 1.5B model's most common stateful bug (a word tally that only ever held the last
    text, in the bench); the trial's second call cannot see it, since each call returns the
    same. Not when the method reads another slot (it may be rebuilding ``tally`` from it),
    and not when the intent asks to start over (reset, clear, replace, ...)."""
    if _STARTS_OVER & set(re.findall(r"[a-z]+", intent.lower())):
        return
    others = {_slot(n) for n in ast.walk(func)} - {None}
    for i, stmt in enumerate(func.body):
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and (slot := _slot(stmt.targets[0])) is not None
                and _is_empty(stmt.value)):
            continue
        earlier = any(_is_self_attribute(n, slot) for s in func.body[:i] for n in ast.walk(s))
        if earlier or others - {slot, "_p_changed"} or not any(_adds_to(s, slot) for s in func.body[i + 1:]):
            continue
        guard = ast.parse(f"if not hasattr(self, {slot!r}):\n    pass").body[0]
        guard.body = [stmt]  # type: ignore[attr-defined]
        func.body[i] = guard
        repairs.append(f"`{ast.unparse(stmt)}` ran on every call and threw away what earlier calls kept: "
                       "it now runs only when the slot is missing")
        return


# what a method's use of a slot says it holds: the calls and stores only that kind of container has
_KINDS = {"append": "[]", "extend": "[]", "insert": "[]", "update": "{}", "setdefault": "{}", "items": "{}", "keys": "{}",
          "values": "{}", "get": "{}", "add": "set()", "discard": "set()"}


def _read_modify_writes(func: FuncDef) -> list[tuple[ast.Attribute, str]]:
    """``self.x += v`` and ``self.x = self.x + v`` (or ``-``), each with the empty value its operand
    says the slot holds: ``[]`` for a list, ``''`` for a string, else ``0``."""
    found = []
    for node in ast.walk(func):
        if isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Add, ast.Sub)):
            target, operand = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.value, ast.BinOp) \
                and isinstance(node.value.op, (ast.Add, ast.Sub)) and _slot(node.targets[0]) is not None \
                and _slot(node.value.left) == _slot(node.targets[0]):
            target, operand = node.targets[0], node.value.right
        else:
            continue
        if isinstance(target, ast.Attribute) and _slot(target) is not None:
            text = isinstance(operand, ast.Constant) and isinstance(operand.value, str)
            found.append((target, "[]" if isinstance(operand, ast.List) else "''" if text else "0"))
    return found


def _create_missing(func: FuncDef, known: set[str], repairs: list[str]) -> None:
    """A slot the method adds to but the receiver does not have and the method never creates
    gets the protocol's first-use idiom, as the container its use says it is.

    The 1.5B model often writes ``self.entries[item] = qty`` on an object with no such
    slot (the name copied from the protocol's own example), and a candidate that fails
    with AttributeError is then, in the bench, sampled again identically at temperatures
    0.6, 0.8 and 1.0. Only where the use names one kind of container (a dict for an item
    store, a list for ``append``, a set for ``add``, a count for ``self.count += 1``) and the
    slot is added to; a slot the method only reads is left to fail, since no default would
    be the method's answer."""
    uses: dict[str, set[str]] = {}
    handled: set[str] = set()  # slots the method assigns, or asks whether it has
    added: set[str] = set()
    updates = _read_modify_writes(func)  # self.count += 1 adds to the slot; it does not create it
    for target, kind in updates:
        uses.setdefault(target.attr, set()).add(kind)
        added.add(target.attr)
    update_targets = {id(target) for target, _ in updates}
    for node in ast.walk(func):
        if id(node) in update_targets:
            continue
        if isinstance(node, ast.Attribute) and _slot(node) is not None and isinstance(node.ctx, (ast.Store, ast.Del)):
            handled.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr", "setattr"):
            handled.update(a.value for a in node.args[1:2] if isinstance(a, ast.Constant) and isinstance(a.value, str))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _KINDS \
                and (slot := _slot(node.func.value)) is not None:
            uses.setdefault(slot, set()).add(_KINDS[node.func.attr])
            if node.func.attr in _ADDERS:
                added.add(slot)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and (slot := _slot(node.value)) is not None:
            uses.setdefault(slot, set()).add("{}")
            added.add(slot)
    start = 1 if func.body and isinstance(func.body[0], ast.Expr) and isinstance(func.body[0].value, ast.Constant) else 0
    for slot in sorted(added - handled - known):
        if len(uses[slot]) != 1 or slot.startswith("_"):
            continue
        [empty] = uses[slot]
        guard = ast.parse(f"if not hasattr(self, {slot!r}):\n    self.{slot} = {empty}").body[0]
        func.body.insert(start, guard)
        repairs.append(f"slot {slot} is added to but was never created: it is now created on first use, as {empty}")


def _mark_changes(func: FuncDef, repairs: list[str]) -> None:
    """A method that changes a slot in place but does not say so gets ``self._p_changed = True``
    before each of its returns and at its end, where the covenant asks for it.

    The 1.5B model forgets the mark more than any other rule (three of the stateful bench's
    failed candidates in one run, each costing a model call), and where it goes is decided
    by the covenant's own path check: a mark on a path that changed nothing costs one
    needless write, a missing one loses the change at the next restart. A return whose
    value itself changes the object (``return self.stack.pop()``) keeps the value first.
    If the result still breaks the covenant, the method is left as written for the guardian."""
    if not isinstance(func, ast.FunctionDef) or not Covenant().check(func):
        return
    marked = ast.parse(ast.unparse(func)).body[0]  # a copy: changed only if the result passes
    assert isinstance(marked, ast.FunctionDef)
    kept = _fresh_name(marked, "result")

    def mark(block: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in block:
            if isinstance(stmt, ast.Return):
                if stmt.value is not None and mutates(stmt.value):
                    out.append(ast.Assign(targets=[ast.Name(kept, ast.Store())], value=stmt.value))
                    stmt = ast.Return(value=ast.Name(kept, ast.Load()))
                out += [ast.parse(MARK).body[0], stmt]
                continue
            if not isinstance(stmt, (*_FUNC, ast.ClassDef)):  # a nested function's returns are its own
                for name in ("body", "orelse", "finalbody"):
                    inner = getattr(stmt, name, None)
                    if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                        setattr(stmt, name, mark(inner))
                for handler in getattr(stmt, "handlers", []):
                    handler.body = mark(handler.body)
                for case in getattr(stmt, "cases", []):
                    case.body = mark(case.body)
            out.append(stmt)
        return out

    marked.body = mark(marked.body)
    if not isinstance(marked.body[-1], (ast.Return, ast.Raise)):
        marked.body.append(ast.parse(MARK).body[0])
    ast.fix_missing_locations(marked)
    if Covenant().check(marked):
        return
    func.body = marked.body
    repairs.append(f"added `{MARK}` where the method returns after changing a slot in place")


def _fresh_name(func: FuncDef, stem: str) -> str:
    used = {n.id for n in ast.walk(func) if isinstance(n, ast.Name)} | {a.arg for a in ast.walk(func) if isinstance(a, ast.arg)}
    name, n = stem, 0
    while name in used:
        n += 1
        name = f"{stem}_{n}"
    return name


def normalised(source: str) -> str:
    """A candidate's identity for "was this tried already": its AST without
    docstrings, positions or formatting, so a copy that differs only in
    whitespace, comments or quoting is the same candidate."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return " ".join(source.split())
    for node in ast.walk(tree):
        if isinstance(node, (*_FUNC, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)
