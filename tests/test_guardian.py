"""The guardian: extraction from real model output, the safety policy, the covenant."""

from __future__ import annotations

import ast
import subprocess

import pytest

from batos.cognition.guardian import audit
from batos.cognition.guardian.policy import SafetyPolicy

from .conftest import BIN

# -- extraction ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "def double(self, x):\n    return 2 * x\n",
        "Sure! Here it is:\n\n```python\ndef double(self, x):\n    return 2 * x\n```\n\nIt doubles x.",
        "```\ndef double(self, x):\n    return 2 * x\n```",
        "```py\nclass Genesis:\n    def double(self, x):\n        return 2 * x\n```",
        "Here you go:\ndef double(self, x):\n    return 2 * x\nThat's all, folks!",
        "```python\ndef helper(y):\n    return y\n\ndef double(self, x):\n    return 2 * x\n```",
        "```text\nnot code\n```\n```python\ndef double(self, x):\n    return 2 * x\n```",
    ],
)
def test_extracts_the_method_from_real_shapes_of_model_output(text):
    report = audit(text, "double")
    assert report.accepted, report.errors
    assert report.source == "def double(self, x):\n    return 2 * x\n"


def test_top_level_imports_travel_with_the_method():
    report = audit("import math\nfrom functools import reduce\n\ndef area(self, r):\n    return math.pi * r * r\n", "area")
    assert report.accepted
    assert report.source.startswith("import math\nfrom functools import reduce\n\ndef area(self, r):")


@pytest.mark.parametrize(
    "text, selector, reason",
    [
        ("I can't help with that.", "double", "no def double(self, ...) found"),
        ("def double(x):\n    return 2 * x\n", "double", "no def double(self, ...) found"),
        ("def triple(self, x):\n    return 3 * x\n", "double", "no def double(self, ...) found"),
        ("def double(self, x):\n    return (\n", "double", "syntax error"),
        ("```python\ndef double(self, x):\n    return 2\n```\n```python\ndef double(self, y):\n    return 3\n```", "double", "exactly one method"),
        ("def a(self):\n    pass\ndef b(self):\n    pass\n", None, "exactly one method"),
    ],
)
def test_extraction_rejects_with_a_reason(text, selector, reason):
    report = audit(text, selector)
    assert not report.accepted
    assert report.source is None
    assert reason in report.errors[0]


# -- the safety policy: a corpus of escape attempts ----------------------------------

ESCAPES = {
    "subclasses walk": "def m(self):\n    return ().__class__.__base__.__subclasses__()\n",
    "mro walk": "def m(self):\n    return type(self).mro()[-1]\n",
    "dunder via getattr": "def m(self):\n    return getattr(self, '__class__')\n",
    "computed getattr": "def m(self, n):\n    return getattr(self, '_' + '_class__')\n",
    "computed getattr name": "def m(self, name):\n    return getattr(self, name)\n",
    "setattr private": "def m(self):\n    setattr(self, '_p_jar', None)\n",
    "format attribute walk": "def m(self):\n    return '{0.__init__.__globals__}'.format(self)\n",
    "format with variable template": "def m(self, t):\n    return t.format(self)\n",
    "str.format walk": "def m(self):\n    return str.format('{0._p_jar}', self)\n",
    "format_map": "def m(self):\n    return '{x}'.format_map({'x': 1})\n",
    "f-string dunder": "def m(self):\n    return f'{self.__class__}'\n",
    "generator frame": "def m(self):\n    g = (x for x in [1])\n    return g.gi_frame.f_back.f_globals\n",
    "coroutine frame": "def m(self):\n    def h():\n        yield 1\n    return h().gi_code\n",
    "traceback frame": "def m(self):\n    try:\n        1 / 0\n    except Exception as e:\n        return e.__traceback__.tb_frame\n",
    "tb_frame without dunder": "def m(self, tb):\n    return tb.tb_frame.f_globals\n",
    "eval": "def m(self):\n    return eval('1+1')\n",
    "exec": "def m(self):\n    exec('x = 1')\n",
    "compile": "def m(self):\n    return compile('1', 'x', 'eval')\n",
    "open": "def m(self):\n    return open('/etc/passwd').read()\n",
    "__import__": "def m(self):\n    return __import__('os').system('id')\n",
    "import os": "import os\n\ndef m(self):\n    return os.getcwd()\n",
    "import inside": "def m(self):\n    import subprocess\n    return subprocess.run(['id'])\n",
    "from sys": "def m(self):\n    from sys import modules\n    return modules\n",
    "importlib": "def m(self):\n    import importlib\n    return importlib.import_module('os')\n",
    "ctypes": "def m(self):\n    import ctypes\n    return ctypes.CDLL(None)\n",
    "socket": "def m(self):\n    import socket\n    return socket.socket()\n",
    "builtins module": "def m(self):\n    import builtins\n    return builtins.open\n",
    "star import": "from math import *\n\ndef m(self):\n    return pi\n",
    "relative import": "from . import uvm\n\ndef m(self):\n    return uvm\n",
    "private from import": "from json import _default_decoder\n\ndef m(self):\n    return _default_decoder\n",
    "globals": "def m(self):\n    return globals()['__builtins__']\n",
    "locals": "def m(self):\n    return locals()\n",
    "vars": "def m(self):\n    return vars(self)\n",
    "p_jar": "def m(self):\n    return self._p_jar.root()\n",
    "slots internals": "def m(self):\n    return self._slots\n",
    "global": "counter = 0\n\ndef m(self):\n    global counter\n    counter += 1\n",
    "nonlocal": "def m(self):\n    x = 1\n    def h():\n        nonlocal x\n        x = 2\n    h()\n    return x\n",
    "positional-only shadow": "def m(self, /, __builtins__=None):\n    return __builtins__\n",
    "second self": "def m(self, x, self2, *, self=None):\n    return self\n",
    "builtin as default": "def m(self, e=eval):\n    return e('1')\n",
    "rebinding self": "def m(self, other):\n    self = other\n    return self\n",
    "decorator": "def deco(f):\n    return f\n\n@deco\ndef m(self):\n    return 1\n",
    "nested class": "def m(self):\n    class X:\n        def __getattr__(self, n):\n            return n\n    return X()\n",
    "type() with dunder dict": "def m(self):\n    return type('X', (), {'__getattr__': lambda s, n: n})()\n",
    "subscript dunder": "def m(self, d):\n    return d['__builtins__']\n",
    "async": "async def m(self):\n    return 1\n",
    "breakpoint": "def m(self):\n    breakpoint()\n",
    "exit": "def m(self):\n    exit(1)\n",
    "alias private import": "import math as _m\n\ndef m(self):\n    return _m.pi\n",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_attempts_are_rejected(name):
    report = audit(ESCAPES[name], "m")
    assert not report.accepted, f"{name} was accepted"
    assert all(e.startswith("Line ") for e in report.errors), report.errors


def test_errors_are_all_collected_with_line_numbers():
    report = audit("import os\n\ndef m(self):\n    x = eval('1')\n    return self._p_jar\n", "m")
    assert report.errors == [
        "Line 1: import of 'os' is not allowed",
        "Line 4: use of 'eval' is not allowed",
        "Line 5: access to the private attribute '_p_jar' is not allowed",
    ]


@pytest.mark.parametrize(
    "source",
    [
        "import math, statistics\n\ndef m(self, xs):\n    return statistics.mean(xs) + math.sqrt(len(xs))\n",
        "from collections import Counter\n\ndef m(self, text):\n    return Counter(text.split()).most_common(3)\n",
        "def m(self):\n    return '{} is {:.2f}'.format('pi', 3.14159)\n",
        "def m(self, name):\n    return f'hello {name}, I am {self.name}'\n",
        "def m(self):\n    return getattr(self, 'name', 'nobody')\n",
        "def m(self, xs):\n    return sorted(xs, key=lambda x: -x)[:3]\n",
        "def m(self, n):\n    return self.factorial(n) // 2\n",
        "import datetime\n\ndef m(self):\n    return datetime.datetime.now().isoformat()\n",
    ],
)
def test_ordinary_methods_pass(source):
    report = audit(source, "m")
    assert report.accepted, report.errors


# -- the safety policy is default-deny ----------------------------------------------


class FutureExpr(ast.expr):
    """A node type this policy has never heard of, as a later Python may add one."""

    _fields = ()


def test_a_node_type_without_a_rule_is_refused():
    tree = ast.parse("def m(self):\n    return 1\n")
    tree.body[0].body[0].value = FutureExpr(lineno=2, col_offset=11, end_lineno=2, end_col_offset=12)
    policy = SafetyPolicy()
    policy.visit(tree)
    assert policy.errors == ["Line 2: FutureExpr is not allowed"]


def test_a_node_type_python_parses_but_no_rule_allows_is_refused():
    policy = SafetyPolicy()
    policy.visit(ast.parse("def m(self):\n    return 1  # type: ignore\n", type_comments=True))
    assert policy.errors == ["Line 2: TypeIgnore is not allowed"]


# -- holes an attacker found: each one, with the exact report ---------------------------

MARK_ONLY = "self._p_changed may only be set, as the statement `self._p_changed = True` after changing a slot in place; do not read, clear or delete it"
UNMARKED = "a path through 'm' mutates self and ends without `self._p_changed = True`"
LEADS_TO_DANGEROUS = "an allowed module must not lead to a dangerous one"
STRINGS_AS_CODE = "it evaluates strings as code, registers callables or hands out reflection"
METACLASS = "it is a metaclass: it builds classes, as type() with three arguments does"
ONLY_CALLED = "may only be called where it is named (passed on, the mutation escapes the covenant)"
CONSTANT_DEFAULT = "must be a constant (None, a number, a string, a tuple of them)"

HOLES = {
    # allowed modules that lead to dangerous ones
    "uuid.os": (
        "import uuid\n\ndef m(self):\n    return uuid.os.getcwd()\n",
        [f"Line 4: access to 'os' is not allowed ({LEADS_TO_DANGEROUS})"],
    ),
    "enum.bltns": (
        "import enum\n\ndef m(self):\n    return enum.bltns.open\n",
        [f"Line 4: access to 'bltns' is not allowed ({STRINGS_AS_CODE})"],
    ),
    "dataclasses.builtins": (
        "import dataclasses\n\ndef m(self):\n    return dataclasses.builtins\n",
        [f"Line 4: access to 'builtins' is not allowed ({LEADS_TO_DANGEROUS})"],
    ),
    "json.codecs": (
        "import json\n\ndef m(self):\n    return json.codecs.open('/etc/passwd').read()\n",
        [f"Line 4: access to 'codecs' is not allowed ({LEADS_TO_DANGEROUS})"],
    ),
    "datetime.sys through an import alias": (
        "import datetime as dt\n\ndef m(self):\n    return dt.sys.modules\n",
        [f"Line 4: access to 'sys' is not allowed ({LEADS_TO_DANGEROUS})"],
    ),
    "dataclasses.inspect": (
        "import dataclasses\n\ndef m(self):\n    return dataclasses.inspect.stack()\n",
        [f"Line 4: access to 'inspect' is not allowed ({LEADS_TO_DANGEROUS})"],
    ),
    "from dataclasses import inspect": (
        "from dataclasses import inspect\n\ndef m(self):\n    return inspect.stack()\n",
        [f"Line 1: importing 'inspect' from 'dataclasses' is not allowed ({LEADS_TO_DANGEROUS})"],
    ),
    "import json.codecs": (
        "import json.codecs\n\ndef m(self):\n    return 1\n",
        ["Line 1: import of 'json.codecs' is not allowed"],
    ),
    "module aliased to a local": (
        "import json\n\ndef m(self):\n    j = json\n    return j.codecs\n",
        [
            "Line 4: the module 'json' may only be used as json.<name>, not passed on or aliased",
            f"Line 5: access to 'codecs' is not allowed ({LEADS_TO_DANGEROUS})",
        ],
    ),
    "module passed to a format template": (
        "import uuid\n\ndef m(self):\n    return '{0.platform}'.format(uuid)\n",
        ["Line 4: the module 'uuid' may only be used as uuid.<name>, not passed on or aliased"],
    ),
    "uuid.platform (a module outside the allow-list)": (
        "import uuid\n\ndef m(self):\n    return uuid.platform.architecture()\n",
        ["Line 4: access to 'platform' is not allowed (it leads to the module 'platform', which methods may not use)"],
    ),
    "typing.stdlib_re.copyreg": (
        "import typing\n\ndef m(self):\n    return typing.stdlib_re.copyreg.dispatch_table\n",
        ["Line 4: access to 'copyreg' is not allowed (it leads to the module 'copyreg', which methods may not use)"],
    ),
    "module attribute assigned": (
        "import json\n\ndef m(self):\n    json.dumps = repr\n",
        ["Line 4: assigning or deleting 'dumps' of a module is not allowed (every later method shares the module)"],
    ),
    # reflection without writing getattr(
    "getattr aliased": (
        "def m(self):\n    look = getattr\n    return look(self, 'name')\n",
        ["Line 2: 'getattr' may only be called where it is named, not passed on or aliased"],
    ),
    "getattr passed to functools.reduce": (
        "import functools\n\ndef m(self, path):\n    return functools.reduce(getattr, path, self)\n",
        ["Line 4: 'getattr' may only be called where it is named, not passed on or aliased"],
    ),
    "getattr passed to map": (
        "def m(self, names):\n    return list(map(getattr, [self] * len(names), names))\n",
        ["Line 2: 'getattr' may only be called where it is named, not passed on or aliased"],
    ),
    "getattr rebound": (
        "def m(self, getattr):\n    return getattr(self, 'name')\n",
        ["Line 1: binding the name 'getattr' is not allowed (the guardian checks each call of the builtin getattr()); rename it"],
    ),
    "operator.attrgetter": (
        "import operator\n\ndef m(self, n):\n    return operator.attrgetter(n)(self)\n",
        [f"Line 4: access to 'attrgetter' is not allowed ({STRINGS_AS_CODE})"],
    ),
    "from operator import methodcaller": (
        "from operator import methodcaller\n\ndef m(self):\n    return methodcaller('name')(self)\n",
        [f"Line 1: importing 'methodcaller' from 'operator' is not allowed ({STRINGS_AS_CODE})"],
    ),
    "type with three arguments": (
        "def m(self):\n    return type('X', (), {})\n",
        ["Line 2: type() with three arguments builds a class; only type(x) is allowed"],
    ),
    "type(type(x)) is the metaclass": (
        "def m(self):\n    make = type(type(1))\n    return make\n",
        [
            "Line 2: type(x) may only be compared (type(x) is int); use isinstance() otherwise",
            "Line 2: type(x) may only be compared (type(x) is int); use isinstance() otherwise",
        ],
    ),
    "type as a value": (
        "def m(self, x):\n    return isinstance(x, type)\n",
        ["Line 2: 'type' may only be called where it is named, not passed on or aliased"],
    ),
    "a metaclass from an allowed module": (
        "import numbers\n\ndef m(self):\n    return numbers.ABCMeta('X', (), {})\n",
        [f"Line 4: access to 'ABCMeta' is not allowed ({METACLASS})"],
    ),
    "Enum functional API with computed dunder hooks": (
        "from enum import Enum\n\ndef m(self):\n    return Enum('X', {'_' * 2 + 'repr' + '_' * 2: lambda s: 'hook'})\n",
        ["Line 1: importing 'Enum' from 'enum' is not allowed (an Enum without members builds classes through its functional API)"],
    ),
    "super": (
        "def m(self):\n    return super(type(self), self)\n",
        ["Line 2: use of 'super' is not allowed", "Line 2: type(x) may only be compared (type(x) is int); use isinstance() otherwise"],
    ),
    # format strings walking attributes
    "field nested in a format spec": (
        "def m(self):\n    return '{0:{0.__class__}}'.format(self)\n",
        ["Line 2: format field '0.__class__' is not allowed (it is private)"],
    ),
    "format field walking to a dangerous module": (
        "def m(self, u):\n    return '{0.os.environ}'.format(u)\n",
        [f"Line 2: format field '0.os.environ' is not allowed ({LEADS_TO_DANGEROUS})"],
    ),
    "bound .format of a variable template": (
        "def m(self, t):\n    f = t.format\n    return f(self)\n",
        ["Line 2: str.format() needs a constant template (templates can walk attributes)"],
    ),
    "str.format passed on": (
        "def m(self, ts):\n    return list(map(str.format, ts, [self] * len(ts)))\n",
        ["Line 2: str.format() needs a constant template (templates can walk attributes)"],
    ),
    "format() with a computed spec": (
        "def m(self, x, spec):\n    return format(x, spec)\n",
        ["Line 2: format() needs a constant format spec"],
    ),
    "f-string with a computed spec": (
        "def m(self, x):\n    return f'{x:{self.spec}}'\n",
        ["Line 2: an f-string format spec must be written out, without nested {...}"],
    ),
    # strings evaluated at run time
    "typing.get_type_hints": (
        "import typing\n\ndef m(self, f):\n    return typing.get_type_hints(f)\n",
        [f"Line 4: access to 'get_type_hints' is not allowed ({STRINGS_AS_CODE})"],
    ),
    "typing.NamedTuple": (
        "from typing import NamedTuple\n\ndef m(self):\n    return NamedTuple('P', [('x', int)])\n",
        [f"Line 1: importing 'NamedTuple' from 'typing' is not allowed ({STRINGS_AS_CODE})"],
    ),
    "functools.singledispatch": (
        "import functools\n\ndef m(self, f):\n    return functools.singledispatch(f)\n",
        [f"Line 4: access to 'singledispatch' is not allowed ({STRINGS_AS_CODE})"],
    ),
    "string annotation": (
        "def m(self, x: 'list[int]') -> int:\n    return len(x)\n",
        ["Line 1: string annotations are not allowed (whoever reads them evaluates them as code)"],
    ),
    # the receiver's own API
    "self.define_method": (
        "def m(self):\n    self.define_method('x', 'def x(self):\\n    pass\\n')\n",
        ["Line 2: access to 'define_method' is not allowed (it would install a method the guardian never audited)"],
    ),
    "define_method on a parent": (
        "def m(self):\n    self.parents[0].define_method('x', 'def x(self):\\n    pass\\n')\n",
        ["Line 2: access to 'define_method' is not allowed (it would install a method the guardian never audited)"],
    ),
    "getattr of define_method": (
        "def m(self):\n    return getattr(self, 'define_method')\n",
        ["Line 2: getattr() of 'define_method' is not allowed (it would install a method the guardian never audited)"],
    ),
    "self.revert_method": (
        "def m(self):\n    return self.revert_method('x')\n",
        ["Line 2: access to 'revert_method' is not allowed (it would bring back a method version without an audit)"],
    ),
    "self.forget_method": (
        "def m(self):\n    return self.forget_method('x')\n",
        ["Line 2: access to 'forget_method' is not allowed (methods are removed by the architect, not by other methods)"],
    ),
    "self.ancestors": (
        "def m(self):\n    return list(self.ancestors())\n",
        [
            "Line 2: access to 'ancestors' is not allowed (it is the kernel's reflection over the lookup chain;"
            " a method reads its parents, if it must, through 'parents')"
        ],
    ),
    "a _v_ attribute": (
        "def m(self):\n    return self._v_compiled\n",
        ["Line 2: access to the private attribute '_v_compiled' is not allowed"],
    ),
    "_p_changed read": (
        "def m(self):\n    return self._p_changed\n",
        [f"Line 2: {MARK_ONLY}"],
    ),
    "_p_changed set False": (
        "def m(self):\n    self._p_changed = False\n",
        [f"Line 2: {MARK_ONLY}"],
    ),
    "_p_changed deleted": (
        "def m(self):\n    del self._p_changed\n",
        [f"Line 2: {MARK_ONLY}"],
    ),
    # code that runs outside the watched call
    "default with a payload": (
        "def m(self, x=print('boo')):\n    return x\n",
        [f"Line 1: the default of 'x' {CONSTANT_DEFAULT}"],
    ),
    "mutable default": (
        "def m(self, seen=[]):\n    return seen\n",
        [f"Line 1: the default of 'seen' {CONSTANT_DEFAULT}"],
    ),
    "keyword-only default in a lambda": (
        "def m(self):\n    return (lambda *, y=len('x'): y)()\n",
        [f"Line 2: the default of 'y' {CONSTANT_DEFAULT}"],
    ),
    "annotation with a payload": (
        "def m(self, x: print('boo')):\n    return x\n",
        ["Line 1: annotations must name types (they are evaluated when the function is defined, outside the watched call)"],
    ),
    "generator method": (
        "def m(self):\n    yield self.items\n",
        ["Line 2: 'yield' is not allowed (a generator runs after the method has returned); build and return a list"],
    ),
    "async generator expression": (
        "def m(self, xs):\n    return (x async for x in xs)\n",
        ["Line 2: 'async for' is not allowed"],
    ),
    # the covenant, bypassed by aliasing
    "list.append with self.xs first": ("def m(self, v):\n    list.append(self.xs, v)\n", [f"Line 2: {UNMARKED}"]),
    "an alias of list, then append": ("def m(self, v):\n    L = list\n    L.append(self.xs, v)\n", [f"Line 3: {UNMARKED}"]),
    "collections.deque.append with self.q first": (
        "import collections\n\ndef m(self, v):\n    collections.deque.append(self.q, v)\n",
        [f"Line 4: {UNMARKED}"],
    ),
    "heapq.heappush on a slot": ("import heapq\n\ndef m(self, v):\n    heapq.heappush(self.heap, v)\n", [f"Line 4: {UNMARKED}"]),
    "operator.setitem on a slot": ("import operator\n\ndef m(self, k, v):\n    operator.setitem(self.d, k, v)\n", [f"Line 4: {UNMARKED}"]),
    "setattr on self": ("def m(self, v):\n    setattr(self, 'count', v)\n", [f"Line 2: {UNMARKED}"]),
    "push = self.xs.append": (
        "def m(self, v):\n    push = self.xs.append\n    self._p_changed = True\n    push(v)\n",
        [f"Line 2: 'append' {ONLY_CALLED}"],
    ),
    "partial(list.append, self.xs)": (
        "import functools\n\ndef m(self, v):\n    add = functools.partial(list.append, self.xs)\n    self._p_changed = True\n    add(v)\n",
        [f"Line 4: 'append' {ONLY_CALLED}"],
    ),
    "getattr of a mutator": (
        "def m(self, v):\n    push = getattr(self.xs, 'append')\n    self._p_changed = True\n    push(v)\n",
        ["Line 2: getattr() of 'append' is not allowed (call it where it is named, so the covenant sees the mutation)"],
    ),
    "an in-place function aliased": (
        "from heapq import heappush as hp\n\ndef m(self, v):\n    f = hp\n    self._p_changed = True\n    f(self.heap, v)\n",
        [f"Line 4: 'hp' {ONLY_CALLED}"],
    ),
    "me = self": ("def m(self, v):\n    me = self\n    me.xs.append(v)\n", [f"Line 3: {UNMARKED}"]),
    "walrus alias of a slot": ("def m(self, v):\n    if (xs := self.xs):\n        pass\n    xs.append(v)\n", [f"Line 4: {UNMARKED}"]),
    "import math as self": ("import math as self\n\ndef m(self):\n    return 1\n", ["Line 1: rebinding 'self' is not allowed"]),
    "for self in": ("def m(self, xs):\n    for self in xs:\n        pass\n", ["Line 2: rebinding 'self' is not allowed"]),
    "with ... as self": ("def m(self, c):\n    with c as self:\n        pass\n", ["Line 2: rebinding 'self' is not allowed"]),
    "except E as self": (
        "def m(self):\n    try:\n        pass\n    except ValueError as self:\n        pass\n",
        ["Line 4: rebinding 'self' is not allowed"],
    ),
    "walrus (self := ...)": ("def m(self, o):\n    return (self := o)\n", ["Line 2: rebinding 'self' is not allowed"]),
    "def self()": ("def m(self):\n    def self():\n        pass\n", ["Line 2: rebinding 'self' is not allowed"]),
    "lambda self": (
        "def m(self):\n    return (lambda self: 1)(2)\n",
        ["Line 2: a parameter named 'self' other than the method's first shadows the receiver"],
    ),
    "match capture self": (
        "def m(self, o):\n    match o:\n        case [self]:\n            pass\n",
        ["Line 3: rebinding 'self' is not allowed"],
    ),
    "match class pattern on a private attribute": (
        "def m(self, o):\n    match o:\n        case object(_p_jar=j):\n            return j\n",
        ["Line 3: matching the attribute '_p_jar' is not allowed (it is private)"],
    ),
}


@pytest.mark.parametrize("name", list(HOLES))
def test_attacker_holes_are_closed(name):
    source, errors = HOLES[name]
    assert audit(source, "m").errors == errors


# -- ordinary code still passes ------------------------------------------------------------

GOOD_METHODS = {
    "counter": "def increment(self, by=1):\n    self.count = self.count + by\n    self._p_changed = True\n    return self.count\n",
    "todo list that initialises itself": (
        "def add_todo(self, text: str, done: bool = False) -> int:\n    if not hasattr(self, 'items'):\n        self.items = []\n"
        "    self.items.append({'text': text, 'done': done})\n    self._p_changed = True\n    return len(self.items)\n"
    ),
    "dict accumulate": (
        "def tally(self, words):\n    for word in words:\n        self.counts[word] = self.counts.get(word, 0) + 1\n"
        "    self._p_changed = True\n    return dict(self.counts)\n"
    ),
    "standard library": (
        "import math\nimport re\nimport json\nimport itertools\nfrom collections import Counter, defaultdict\n"
        "from datetime import date, timedelta\n\n"
        "def report(self, text: str, start: date) -> str:\n    words = re.findall(r\"[a-z']+\", text.lower())\n"
        "    by_len = defaultdict(list)\n    for w in words:\n        by_len[len(w)].append(w)\n"
        "    pairs = list(itertools.islice(itertools.combinations(sorted(set(words)), 2), 5))\n"
        "    due = start + timedelta(days=math.ceil(len(words) / 10))\n"
        "    return json.dumps({'common': Counter(words).most_common(3), 'pairs': pairs, 'due': due.isoformat()})\n"
    ),
    "comprehensions": (
        "def evens(self, xs: list[int]) -> dict[str, list[int]]:\n    squares = [x * x for x in xs if x % 2 == 0]\n"
        "    return {'squares': squares, 'unique': sorted({x for x in xs}), 'index': {i: x for i, x in enumerate(xs)},"
        " 'total': sum(x for x in xs)}\n"
    ),
    "try/except ValueError": (
        "def parse(self, text):\n    try:\n        value = int(text)\n    except ValueError as exc:\n"
        "        return f'not a number: {exc}'\n    else:\n        return value\n    finally:\n        pass\n"
    ),
    "f-strings with simple specs": (
        "def price(self, amount: float, qty: int = 1) -> str:\n    total = amount * qty\n"
        "    return f\"{qty:>3} x {amount:.2f} = {total:,.2f} ({total!r}) for {self.name}\"\n"
    ),
    "lambda in sorted": (
        "def top(self, n=3):\n    people = sorted(self.people, key=lambda p: (-p['score'], p['name']))\n"
        "    return [p['name'] for p in people[:n]]\n"
    ),
    "while loop": (
        "def collatz(self, n: int) -> int:\n    steps = 0\n    while n != 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n"
        "        steps += 1\n        if steps > 1000:\n            break\n    return steps\n"
    ),
    "nested helper": (
        "def fib_list(self, n):\n    def fib(k):\n        a, b = 0, 1\n        for _ in range(k):\n            a, b = b, a + b\n"
        "        return a\n    return [fib(i) for i in range(n)]\n"
    ),
    "heap queue": (
        "import heapq\n\ndef schedule(self, priority: int, task: str) -> str:\n    heapq.heappush(self.queue, (priority, task))\n"
        "    self._p_changed = True\n    return self.queue[0][1]\n"
    ),
    "match statement": (
        "def command(self, cmd):\n    match cmd.split():\n        case ['add', item]:\n            self.items.append(item)\n"
        "            self._p_changed = True\n            return 'added'\n        case [other, *rest]:\n"
        "            return f'unknown {other} ({len(rest)} args)'\n        case _:\n            return 'empty'\n"
    ),
    "decimal context and statistics": (
        "import decimal\nimport statistics\n\ndef mean(self, xs, places=4):\n    assert xs, 'no data'\n"
        "    with decimal.localcontext() as ctx:\n        ctx.prec = places\n"
        "        return str(decimal.Decimal(statistics.mean(xs)) / 1), -1\n"
    ),
    "a constant format template, and the receiver's own format method": (
        "def greet(self, who):\n    return 'Hello {0}, I am {1:<10}'.format(who, self.format(self.name))\n"
    ),
    "re-parenting and cloning": (
        "def adopt(self, parent, name):\n    self.parents = (parent,) + tuple(self.parents)\n    self._p_changed = True\n"
        "    return self.clone(name=name)\n"
    ),
    "type compared, a flag named like an in-place function": (
        "import random\n\ndef deal(self, cards, shuffle=True):\n    cards = list(cards)\n    if shuffle and type(cards) is list:\n"
        "        random.shuffle(cards)\n    return cards\n"
    ),
    "slots named like modules": "import collections.abc\n\ndef m(self, x):\n    return isinstance(x, collections.abc.Mapping) or self.types\n",
}


@pytest.mark.parametrize("name", list(GOOD_METHODS))
def test_realistic_methods_pass(name):
    report = audit(GOOD_METHODS[name])
    assert report.accepted, report.errors


# -- the Persistence Covenant ----------------------------------------------------------

COVENANT_REJECTED = {
    "top level": "def m(self, x):\n    self.items.append(x)\n    return x\n",
    "inside if": "def m(self, x):\n    if x:\n        self.items.append(x)\n    return x\n",
    "inside for": "def m(self, xs):\n    for x in xs:\n        self.totals[x] = 1\n    return len(xs)\n",
    "inside while": "def m(self):\n    while self.queue:\n        self.queue.pop()\n",
    "inside with": "def m(self, lock):\n    with lock:\n        self.counts['x'] += 1\n",
    "inside try": "def m(self, x):\n    try:\n        self.data.update(x)\n    except ValueError:\n        pass\n",
    "in except": "def m(self, x):\n    try:\n        return int(x)\n    except ValueError:\n        self.errors.append(x)\n    return None\n",
    "one branch marks": "def m(self, x):\n    if x:\n        self.a.append(1)\n        self._p_changed = True\n    else:\n        self.a.append(2)\n",
    "early return": "def m(self, x):\n    self.items.append(x)\n    if x > 3:\n        return 'big'\n    self._p_changed = True\n    return 'small'\n",
    "mutation after mark": "def m(self, x):\n    self._p_changed = True\n    self.items.append(x)\n",
    "mutating return": "def m(self):\n    return self.items.pop()\n",
    "alias": "def m(self, x):\n    items = self.items\n    items.append(x)\n    return len(items)\n",
    "delete": "def m(self, k):\n    del self.cache[k]\n",
    "nested subscript": "def m(self, k, v):\n    self.tree['a'][k] = v\n",
    "tuple target": "def m(self):\n    self.a[0], self.b = 1, 2\n",
    "match": "def m(self, cmd):\n    match cmd:\n        case 'add':\n            self.n[0] += 1\n        case _:\n            pass\n",
    "comprehension": "def m(self, xs):\n    [self.seen.add(x) for x in xs]\n",
    "nested helper": "def m(self, x):\n    def helper():\n        self.items.append(x)\n    helper()\n",
}
COVENANT_ACCEPTED = {
    "marked": "def m(self, x):\n    self.items.append(x)\n    self._p_changed = True\n    return x\n",
    "marked in both branches": "def m(self, x):\n    if x:\n        self.a = 1\n        self._p_changed = True\n        return 1\n    self.a = 2\n    self._p_changed = True\n    return 2\n",
    "marked after loop": "def m(self, xs):\n    for x in xs:\n        self.totals[x] = 1\n    self._p_changed = True\n",
    "raise path needs no mark": "def m(self, x):\n    self.items.append(x)\n    if x < 0:\n        raise ValueError('negative')\n    self._p_changed = True\n",
    "read only": "def m(self):\n    return sum(self.items) + len(self.name)\n",
    "local list": "def m(self, x):\n    items = list(self.items)\n    items.append(x)\n    return items\n",
    "copy then assign": "def m(self, x):\n    items = list(self.items) + [x]\n    self.items = items\n    self._p_changed = True\n    return len(items)\n",
    "calling own method": "def m(self, x):\n    return self.other(x)\n",
    "finally marks": "def m(self, x):\n    try:\n        self.items.append(x)\n    finally:\n        self._p_changed = True\n",
}


@pytest.mark.parametrize("name", sorted(COVENANT_REJECTED))
def test_covenant_violations_are_found_in_any_block(name):
    report = audit(COVENANT_REJECTED[name], "m")
    assert not report.accepted, f"{name} was accepted"
    assert any("_p_changed" in e for e in report.errors), report.errors


@pytest.mark.parametrize("name", sorted(COVENANT_ACCEPTED))
def test_covenant_accepts_marked_and_read_only_methods(name):
    report = audit(COVENANT_ACCEPTED[name], "m")
    assert report.accepted, report.errors


@pytest.mark.parametrize("source", [
    "def reset(self):\n    self.count = 0\n    return self.count\n",
    "def bump(self):\n    self.count += 1\n    return self.count\n",
    "def add(self, x):\n    self.items = self.items + [x]\n    return self.items\n",
    "def swap(self):\n    self.a, self.b = self.b, self.a\n",
])
def test_plain_slot_assignment_needs_no_mark(source):
    """Regression: the covenant demanded `self._p_changed = True` after `self.todos = items`,
    although a slot assignment goes through __setattr__ and ZODB notices it by itself."""
    assert audit(source, source.split("(")[0][4:]).errors == []


def test_an_in_place_change_after_a_slot_assignment_still_needs_the_mark():
    report = audit("def add(self, x):\n    self.items = []\n    self.items.append(x)\n", "add")
    assert report.errors == ["Line 3: a path through 'add' mutates self and ends without `self._p_changed = True`"]


# -- the command ------------------------------------------------------------------------


def test_batos_audit_command(tmp_path):
    good = tmp_path / "good.md"
    good.write_text("Here:\n```python\ndef greet(self, who):\n    return 'hi ' + who\n```\n")
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef greet(self, who):\n    self.log.append(who)\n    return os.getcwd()\n")
    ok = subprocess.run([str(BIN / "batos"), "audit", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("ACCEPTED greet")
    rejected = subprocess.run([str(BIN / "batos"), "audit", str(bad), "--selector", "greet"], capture_output=True, text=True)
    assert rejected.returncode == 1
    assert rejected.stdout.splitlines()[0] == "REJECTED greet"
    assert "  Line 1: import of 'os' is not allowed" in rejected.stdout
    missing = subprocess.run([str(BIN / "batos"), "audit", str(tmp_path / "none.py")], capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.startswith("batos: error: ") and "Traceback" not in missing.stderr
    binary = tmp_path / "bin.py"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = subprocess.run([str(BIN / "batos"), "audit", str(binary)], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
