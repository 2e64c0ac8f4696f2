"""The safety policy: one ``visit_<Node>`` per rule, in the manner of RestrictedPython.

The policy is *default-deny*: a node type is let through only when it is in
:data:`ALLOWED_NODES` (ordinary method code that needs no rule of its own) or
has a ``visit_<Node>`` rule here; everything else, including node types a
later Python adds, is refused with "<NodeType> is not allowed". Node types
refused on purpose are in :data:`REFUSED_NODES` with the reason the model is
told.

The rules keep a method to plain computation on its receiver and arguments:
imports from an allow-list of pure standard library modules, which must not
lead on to a dangerous module (``uuid.os``); no dynamic code, and no string
that is evaluated as code later (annotations); no reflection, whether through
underscore names, frame objects, attribute-walking format templates or
``getattr`` and its kin passed around as values; nothing that runs outside the
watched call (decorators, defaults, generators, coroutines, classes); no use of
the object model's own API to install code the guardian never saw; and no
rebinding of ``self``. Errors are collected as "Line N: ..." so one report says
everything that is wrong.
"""

from __future__ import annotations

import ast
import enum
import importlib
import re
import string
import types
from typing import Iterator

from batos.cognition.guardian.covenant import IN_PLACE, MUTATORS, is_mark
from batos.sandbox.modules import ALLOWED_MODULES, DANGEROUS_MODULES, DENIED_ATTRIBUTES

FORBIDDEN_NAMES = frozenset(
    {
        "eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "input",
        "breakpoint", "help", "exit", "quit", "os", "sys", "subprocess", "socket", "ctypes",
        "importlib", "builtins",
        # A method belongs to no class, so super() has nothing to do but reach
        # past an object's own attribute protocol: super(T, obj).attr.
        "super",
    }
)
# Builtins the policy checks at each call (a constant attribute name, a
# one-argument type(), a constant format spec). Passed on or aliased
# (functools.reduce(getattr, path, self), look = getattr) they would escape
# those checks, so they may only be called where they are named, and no other
# binding may take their names.
CALL_ONLY = frozenset({"getattr", "setattr", "delattr", "hasattr", "type", "format"})
_DUNDER = re.compile(r"^__\w+__$")
# Attributes without an underscore that still reach frames, code, globals or
# classes, or format with templates that walk attributes.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code",
        "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "co_code",
        "func_globals", "mro", "format_map", "vformat", "get_field", "load_module", "im_func", "im_self",
        "func_code",
    }
)
# Public names of allowed modules that evaluate strings as code, register
# callables or hand out reflection (the sandbox's facades leave them out). They
# are refused as attributes of anything, not only of the module that holds
# them: an alias (m = typing) or a parameter can hold a module too, and none of
# these names is an ordinary attribute of anything else.
DENIED_NAMES = frozenset().union(*DENIED_ATTRIBUTES.values())
# The object model's own API, on self or on any object a method reaches
# (self.parents[0]). ``clone`` stays allowed: it copies slots and already
# audited method records into a new object and runs no code. ``parents`` stays
# assignable: re-parenting is ordinary prototype programming.
RECEIVER_API = {
    "define_method": "it would install a method the guardian never audited",
    "revert_method": "it would bring back a method version without an audit",
    "forget_method": "methods are removed by the architect, not by other methods",
    "ancestors": "it is the kernel's reflection over the lookup chain; a method reads its parents, if it must, through 'parents'",
}

# Node types ordinary method code needs that carry no rule of their own.
ALLOWED_NODES: frozenset[type[ast.AST]] = frozenset(
    {
        ast.Module,
        # statements
        ast.Return, ast.Delete, ast.AugAssign, ast.For, ast.While, ast.If, ast.With, ast.Match, ast.Raise,
        ast.Try, ast.TryStar, ast.Assert, ast.Expr, ast.Pass, ast.Break, ast.Continue,
        # expressions
        ast.BoolOp, ast.NamedExpr, ast.BinOp, ast.UnaryOp, ast.IfExp, ast.Dict, ast.Set, ast.ListComp,
        ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Compare, ast.JoinedStr, ast.Subscript, ast.Starred,
        ast.List, ast.Tuple, ast.Slice,
        # the parts of statements and expressions (import aliases are the import rules' business)
        ast.keyword, ast.withitem, ast.match_case,
        ast.MatchValue, ast.MatchSingleton, ast.MatchSequence, ast.MatchOr,
        # contexts and operators
        ast.Load, ast.Store, ast.Del, ast.And, ast.Or,
        ast.Add, ast.Sub, ast.Mult, ast.MatMult, ast.Div, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
        ast.BitOr, ast.BitXor, ast.BitAnd, ast.FloorDiv, ast.Invert, ast.Not, ast.UAdd, ast.USub,
        ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn,
    }
)
# Node types refused on purpose, with the reason.
REFUSED_NODES: dict[type[ast.AST], str] = {
    # Dunder hooks (__del__, __getattr__, __init_subclass__, a metaclass) run
    # implicitly, some of them outside the watched call.
    ast.ClassDef: "class definitions inside a method are not allowed",
    # The kernel calls methods synchronously: a coroutine's body would run
    # whenever someone awaited it, outside the watched call.
    ast.AsyncFunctionDef: "async functions are not allowed",
    ast.Await: "'await' is not allowed",
    ast.AsyncFor: "'async for' is not allowed",
    ast.AsyncWith: "'async with' is not allowed",
    # A generator's body runs when it is iterated, after the call returned:
    # outside the transaction, the trial's limits and the covenant's paths.
    ast.Yield: "'yield' is not allowed (a generator runs after the method has returned); build and return a list",
    ast.YieldFrom: "'yield from' is not allowed (a generator runs after the method has returned); build and return a list",
    # Methods share their module namespace: a global would be state outside
    # the receiver, invisible to persistence and shared between calls.
    ast.Global: "'global' is not allowed",
    # A nested function rebinding the method's locals from a call defeats the
    # covenant, which follows assignments in order.
    ast.Nonlocal: "'nonlocal' is not allowed",
}


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _is_text(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def is_constant_default(node: ast.AST) -> bool:
    """A constant, a signed number or a tuple of literals: a default value
    whose evaluation runs nothing and which no call can change."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float, complex))
    return isinstance(node, ast.Tuple) and all(is_constant_default(e) for e in node.elts)


def _annotation_problem(node: ast.AST) -> str | None:
    """Why *node* may not be an annotation, or None. Annotations are evaluated
    when the function is defined, outside the watched call, so they may only
    name types: ``X``, ``m.X``, ``X[Y, Z]``, ``X | None``, ``Callable[[X], Y]``."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            return "string annotations are not allowed (whoever reads them evaluates them as code)"
        return None if node.value is None or node.value is Ellipsis else "annotations must name types"
    if isinstance(node, ast.Name):
        return None
    if isinstance(node, ast.Attribute):
        return _annotation_problem(node.value) if isinstance(node.value, (ast.Name, ast.Attribute)) else "annotations must name types"
    if isinstance(node, ast.Subscript):
        return _annotation_problem(node.value) or _annotation_problem(node.slice)
    if isinstance(node, (ast.Tuple, ast.List)):
        return next(filter(None, map(_annotation_problem, node.elts)), None)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _annotation_problem(node.left) or _annotation_problem(node.right)
    return "annotations must name types (they are evaluated when the function is defined, outside the watched call)"


def _attribute_problem(attr: str, on_self: bool) -> str | None:
    """Why the attribute *attr* may not be reached, or None.

    Used for ``x.attr``, ``getattr(x, "attr")``, ``from m import attr``,
    ``case X(attr=...)`` and the fields of format templates. *on_self* says the
    receiver is ``self`` itself: a slot may be named like a module (``self.types``),
    and a slot can never hold a module the method could not reach otherwise.
    """
    if attr.startswith("_"):
        return "it is private"
    if attr in FORBIDDEN_ATTRIBUTES:
        return "it reaches frames, code, globals, classes or attribute-walking formatting"
    if attr in RECEIVER_API:
        return RECEIVER_API[attr]
    if on_self:
        return None
    if attr in DANGEROUS_MODULES:
        return "an allowed module must not lead to a dangerous one"
    if attr in DENIED_NAMES:
        return "it evaluates strings as code, registers callables or hands out reflection"
    return None


def _allowed_module(name: str) -> bool:
    """The worker's facade rule: an allowed root and no dangerous part."""
    parts = name.split(".")
    return parts[0] in ALLOWED_MODULES and not any(p in DANGEROUS_MODULES for p in parts)


def _load(dotted: str) -> types.ModuleType | None:
    """The module an import of *dotted* binds, when its root is allowed.

    Only the allowed roots themselves are imported here (pure standard library
    modules the worker imports too); a submodule is found only if its root
    already loaded it, so what a method names never makes the kernel import it.
    """
    root, *rest = dotted.split(".")
    if root not in ALLOWED_MODULES:
        return None
    module: object = importlib.import_module(root)
    for part in rest:
        module = getattr(module, part, None)
    return module if isinstance(module, types.ModuleType) else None


def _value_problem(value: object) -> str | None:
    """Why an allowed module's attribute holding *value* may not be reached, or None.

    This follows the values, not the names: a module holds others under any
    name (``uuid.platform``, ``dataclasses.abc``, ``re.copyreg``), and classes
    are built not only by ``type()`` but by every metaclass and by an Enum
    without members (``enum.Enum("X", {computed dunder name: hook})``).
    """
    if isinstance(value, types.ModuleType) and not _allowed_module(value.__name__):
        return f"it leads to the module {value.__name__!r}, which methods may not use"
    if isinstance(value, type) and issubclass(value, type):
        return "it is a metaclass: it builds classes, as type() with three arguments does"
    if isinstance(value, enum.EnumType) and not value.__members__:
        return "an Enum without members builds classes through its functional API"
    return None


def _template_fields(template: str) -> Iterator[str]:
    """The replacement fields of a ``str.format`` template, including those
    nested in a format spec (``"{0:{0.__class__}}"``); raises ValueError."""
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is not None:
            yield field
        if spec:
            yield from _template_fields(spec)


# After a field's first name: ".attr" (getattr) or "[key]" (getitem), as str.format reads them.
_FIELD_PART = re.compile(r"\.([^.\[]*)|\[([^\]]*)\]")


class SafetyPolicy(ast.NodeVisitor):
    """One rule per node type; what has no rule is refused. Errors are collected, never raised."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._line: int | str = "?"  # the last line seen, for nodes that carry none
        self._depth = 0  # function nesting: the audited method's own parameters are at depth 0
        self._modules: dict[str, types.ModuleType] = {}  # names bound to modules by the imports seen
        self._in_place: set[str] = set()  # names bound to IN_PLACE functions (from heapq import heappush)

    def error(self, node: ast.AST, message: str) -> None:
        self.errors.append(f"Line {getattr(node, 'lineno', self._line)}: {message}")

    def visit(self, node: ast.AST) -> None:
        """Dispatch to the node's rule, let an allowed node through, refuse the rest."""
        self._line = getattr(node, "lineno", self._line)
        rule = getattr(self, f"visit_{type(node).__name__}", None)
        if rule is not None:
            rule(node)
        elif type(node) in ALLOWED_NODES:
            self.generic_visit(node)
        else:
            self.error(node, REFUSED_NODES.get(type(node), f"{type(node).__name__} is not allowed"))

    # -- bindings ----------------------------------------------------------------

    def _binding(self, node: ast.AST, name: str) -> None:
        """A name bound by an import, a handler, a def, a parameter or a pattern."""
        if name == "self":
            self.error(node, "rebinding 'self' is not allowed")
        elif name in CALL_ONLY:
            self.error(node, f"binding the name {name!r} is not allowed (the guardian checks each call of the builtin {name}()); rename it")
        elif name.startswith("__"):
            self.error(node, f"use of the dunder name {name!r} is not allowed")

    def visit_Name(self, node: ast.Name) -> None:
        self._name(node, called=False, receiver=False)

    def _name(self, node: ast.Name, called: bool, receiver: bool) -> None:
        """*called*: the name is what a call calls; *receiver*: an attribute of it is read."""
        if node.id in FORBIDDEN_NAMES:
            self.error(node, f"use of {node.id!r} is not allowed")
        elif node.id.startswith("__"):
            self.error(node, f"use of the dunder name {node.id!r} is not allowed")
        elif not isinstance(node.ctx, ast.Load):
            self._binding(node, node.id)
        elif called or receiver:
            return
        elif node.id in self._modules:
            # Passed on or aliased, a module would carry what it leads to past the attribute rules.
            self.error(node, f"the module {node.id!r} may only be used as {node.id}.<name>, not passed on or aliased")
        elif node.id in CALL_ONLY:
            self.error(node, f"{node.id!r} may only be called where it is named, not passed on or aliased")
        elif node.id in self._in_place:
            self.error(node, f"{node.id!r} may only be called where it is named (passed on, the mutation escapes the covenant)")

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._binding(node, node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self._binding(node, node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._binding(node, node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self._binding(node, node.rest)
        self.generic_visit(node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        # case X(attr=p) reads X's attribute attr: the attribute rules apply.
        for attr in node.kwd_attrs:
            problem = _attribute_problem(attr, on_self=False)
            if problem:
                self.error(node, f"matching the attribute {attr!r} is not allowed ({problem})")
        self.generic_visit(node)

    # -- imports -----------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] not in ALLOWED_MODULES or any(_attribute_problem(p, on_self=False) for p in parts[1:]):
                self.error(node, f"import of {alias.name!r} is not allowed")
                continue
            if alias.asname and alias.asname.startswith("_"):
                self.error(node, f"import alias {alias.asname!r} starts with an underscore")
                continue
            self._binding(node, alias.asname or parts[0])
            module = _load(alias.name if alias.asname else parts[0])
            if module is not None:
                self._modules[alias.asname or parts[0]] = module

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.error(node, "relative imports are not allowed")
            return
        root = (node.module or "").split(".")[0]
        if root not in ALLOWED_MODULES:
            self.error(node, f"import from {node.module!r} is not allowed")
            return
        module = _load(node.module)
        for alias in node.names:
            if alias.name == "*":
                self.error(node, f"'from {node.module} import *' is not allowed")
                continue
            if alias.name.startswith("_") or (alias.asname or "").startswith("_"):
                self.error(node, f"importing the private name {alias.name!r} is not allowed")
                continue
            value = getattr(module, alias.name, None)
            problem = _attribute_problem(alias.name, on_self=False) or _value_problem(value)
            if problem:
                self.error(node, f"importing {alias.name!r} from {node.module!r} is not allowed ({problem})")
                continue
            self._binding(node, alias.asname or alias.name)
            if isinstance(value, types.ModuleType):
                self._modules[alias.asname or alias.name] = value
            elif alias.name in IN_PLACE:
                self._in_place.add(alias.asname or alias.name)

    # -- attributes and calls ----------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._attribute(node, called=False, receiver=False)

    def _module_of(self, node: ast.AST) -> types.ModuleType | None:
        """The module *node* names (json, json.decoder), as far as the imports tell."""
        if isinstance(node, ast.Name):
            return self._modules.get(node.id)
        if isinstance(node, ast.Attribute) and not node.attr.startswith("_"):
            value = getattr(self._module_of(node.value), node.attr, None)
            return value if isinstance(value, types.ModuleType) else None
        return None

    def _attribute(self, node: ast.Attribute, called: bool, receiver: bool) -> None:
        """*called*: the attribute is what a call calls; *receiver*: an attribute of it is read."""
        on_self = _is_self(node.value)
        module = self._module_of(node.value)
        value = getattr(module, node.attr, None) if module is not None and not node.attr.startswith("_") else None
        problem = _attribute_problem(node.attr, on_self) or _value_problem(value)
        if node.attr == "_p_changed" and on_self:  # the mark, self._p_changed = True, never comes here: see visit_Assign
            self.error(node, "self._p_changed may only be set, as the statement `self._p_changed = True` after changing a slot in place; do not read, clear or delete it")
        elif node.attr.startswith("_"):
            self.error(node, f"access to the private attribute {node.attr!r} is not allowed")
        elif problem:
            self.error(node, f"access to {node.attr!r} is not allowed ({problem})")
        elif module is not None and not isinstance(node.ctx, ast.Load):
            self.error(node, f"assigning or deleting {node.attr!r} of a module is not allowed (every later method shares the module)")
        elif isinstance(value, types.ModuleType) and not receiver:
            self.error(node, f"the module {node.attr!r} may only be used as ...{node.attr}.<name>, not passed on or aliased")
        elif node.attr == "format" and not on_self:  # self.format is the receiver's own slot or method
            self._template(node, node.value)
        elif not called and not on_self and (node.attr in MUTATORS or module is not None and node.attr in IN_PLACE):
            # push = self.items.append, map(self.items.append, xs), partial(list.append, self.items), heapq.heappush
            self.error(node, f"{node.attr!r} may only be called where it is named (passed on, the mutation escapes the covenant)")
        if isinstance(node.value, ast.Name):
            self._name(node.value, called=False, receiver=True)
        elif isinstance(node.value, ast.Attribute):
            self._attribute(node.value, called=False, receiver=True)
        else:
            self.visit(node.value)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            self._name(func, called=True, receiver=False)
            if func.id in CALL_ONLY:
                self._checked_builtin(func.id, node)
        elif isinstance(func, ast.Attribute) and func.attr == "format" and isinstance(func.value, ast.Name) and func.value.id == "str":
            self._template(node, node.args[0] if node.args else None)  # str.format(template, ...)
        elif isinstance(func, ast.Attribute):
            self._attribute(func, called=True, receiver=False)
        else:
            self.visit(func)
        for arg in node.args:
            self.visit(arg)
        for keyword in node.keywords:
            self.visit(keyword)

    def _checked_builtin(self, name: str, node: ast.Call) -> None:
        """The rules for the builtins of :data:`CALL_ONLY`, called by name."""
        if name == "type":
            # visit_Compare takes the type(x) it allows; type(type(x)) is the
            # metaclass, and type(x)(...) or type(x).append(...) call what it returns.
            if self._type_arguments(node):
                self.error(node, "type(x) may only be compared (type(x) is int); use isinstance() otherwise")
            return
        if name == "format":
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args) or (len(node.args) > 1 and not _is_text(node.args[1])):
                self.error(node, "format() needs a constant format spec")
            return
        attr = node.args[1] if len(node.args) > 1 else None
        if not _is_text(attr):
            self.error(node, f"{name}() needs a constant attribute name")
            return
        on_self = _is_self(node.args[0])
        problem = _attribute_problem(attr.value, on_self)
        if problem:
            self.error(node, f"{name}() of {attr.value!r} is not allowed ({problem})")
        elif name == "getattr" and not on_self and attr.value in MUTATORS:
            self.error(node, f"getattr() of {attr.value!r} is not allowed (call it where it is named, so the covenant sees the mutation)")

    def visit_Compare(self, node: ast.Compare) -> None:
        for operand in (node.left, *node.comparators):
            if isinstance(operand, ast.Call) and isinstance(operand.func, ast.Name) and operand.func.id == "type":
                self._type_arguments(operand)
                for arg in (*operand.args, *operand.keywords):
                    self.visit(arg)
            else:
                self.visit(operand)

    def _type_arguments(self, node: ast.Call) -> bool:
        """Whether a call of type() has the one argument it may have; says so if not."""
        if len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Starred):
            return True
        self.error(node, "type() with three arguments builds a class; only type(x) is allowed")
        return False

    def visit_comprehension(self, node: ast.comprehension) -> None:
        # (x async for x in xs) is legal in a plain function: an async
        # generator, whose body runs whenever someone awaits it.
        if node.is_async:
            self.error(node.target, "'async for' is not allowed")
        self.generic_visit(node)

    # -- formatting --------------------------------------------------------------

    def _template(self, node: ast.AST, template: ast.AST | None) -> None:
        """A str.format template must be a constant whose fields walk no forbidden attribute."""
        if not _is_text(template):
            self.error(node, "str.format() needs a constant template (templates can walk attributes)")
            return
        try:
            fields = list(_template_fields(template.value))
        except ValueError as exc:
            self.error(node, f"bad format template: {exc}")
            return
        for field in fields:
            first = re.match(r"[^.\[]*", field).end()
            for attr, key in _FIELD_PART.findall(field[first:]):
                problem = _attribute_problem(attr, on_self=False) if attr else "it is private" if key.startswith("_") else None
                if problem:
                    self.error(node, f"format field {field!r} is not allowed ({problem})")
                    break

    def visit_FormattedValue(self, node: ast.FormattedValue) -> None:
        # f"{x:.2f}" is fine; a computed spec (f"{x:{spec}}") is a template
        # built at run time, as format(x, spec) is.
        if node.format_spec is not None and not all(isinstance(v, ast.Constant) for v in node.format_spec.values):
            self.error(node, "an f-string format spec must be written out, without nested {...}")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        # "__class__", "__globals__"... as strings only serve reflection
        # (getattr, type(name, bases, dict), frame dictionaries).
        if isinstance(node.value, str) and _DUNDER.match(node.value):
            self.error(node, f"the dunder string {node.value!r} is not allowed")

    # -- statements --------------------------------------------------------------

    def visit_Assign(self, node: ast.Assign) -> None:
        # The one write to a persistence attribute: any other _p_/_v_ access,
        # including reading _p_changed or setting it False, is refused as private.
        if not is_mark(node):
            self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._annotation(node.annotation)
        self.generic_visit(node)

    def _annotation(self, node: ast.AST | None) -> None:
        problem = _annotation_problem(node) if node is not None else None
        if problem:
            self.error(node, problem)

    # -- functions ---------------------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.decorator_list:
            self.error(node, f"decorators on {node.name!r} are not allowed")
        if node.name.startswith("_"):
            self.error(node, f"function name {node.name!r} starts with an underscore")
        else:
            self._binding(node, node.name)
        self._parameters(node.args, is_method=self._depth == 0)
        self._annotation(node.returns)
        self._nested(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._parameters(node.args, is_method=False)
        self._nested(node)

    def _nested(self, node: ast.FunctionDef | ast.Lambda) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    def _parameters(self, node: ast.arguments, is_method: bool) -> None:
        """Parameter names: only the method's first parameter may be 'self'."""
        params = node.posonlyargs + node.args + node.kwonlyargs + [a for a in (node.vararg, node.kwarg) if a]
        for index, arg in enumerate(params):
            if arg.arg.startswith("_") or arg.arg in FORBIDDEN_NAMES:
                self.error(arg, f"parameter name {arg.arg!r} is not allowed")
            elif arg.arg == "self":
                if not (is_method and index == 0):
                    self.error(arg, "a parameter named 'self' other than the method's first shadows the receiver")
            else:
                self._binding(arg, arg.arg)

    def visit_arguments(self, node: ast.arguments) -> None:
        # Defaults are evaluated when the function is defined, outside the
        # watched call, and a mutable one is shared by every call.
        positional = node.posonlyargs + node.args
        pairs = list(zip(positional[len(positional) - len(node.defaults):], node.defaults))
        pairs += [(a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults) if d is not None]
        for arg, default in pairs:
            if not is_constant_default(default):
                self.error(default, f"the default of {arg.arg!r} must be a constant (None, a number, a string, a tuple of them)")
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        self._annotation(node.annotation)
        self.generic_visit(node)
