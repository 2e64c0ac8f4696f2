"""The guardian: extraction from real model output, the safety policy, the covenant."""

from __future__ import annotations

import subprocess

import pytest

from batos.cognition.guardian import audit

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


# -- the Persistence Covenant ----------------------------------------------------------

COVENANT_REJECTED = {
    "top level": "def m(self, x):\n    self.items.append(x)\n    return x\n",
    "inside if": "def m(self, x):\n    if x:\n        self.items.append(x)\n    return x\n",
    "inside for": "def m(self, xs):\n    for x in xs:\n        self.totals[x] = 1\n    return len(xs)\n",
    "inside while": "def m(self):\n    while self.queue:\n        self.queue.pop()\n",
    "inside with": "def m(self, lock):\n    with lock:\n        self.count += 1\n",
    "inside try": "def m(self, x):\n    try:\n        self.data.update(x)\n    except ValueError:\n        pass\n",
    "in except": "def m(self, x):\n    try:\n        return int(x)\n    except ValueError:\n        self.errors.append(x)\n    return None\n",
    "one branch marks": "def m(self, x):\n    if x:\n        self.a = 1\n        self._p_changed = True\n    else:\n        self.a = 2\n",
    "early return": "def m(self, x):\n    self.items.append(x)\n    if x > 3:\n        return 'big'\n    self._p_changed = True\n    return 'small'\n",
    "mutation after mark": "def m(self, x):\n    self._p_changed = True\n    self.items.append(x)\n",
    "mutating return": "def m(self):\n    return self.items.pop()\n",
    "alias": "def m(self, x):\n    items = self.items\n    items.append(x)\n    return len(items)\n",
    "delete": "def m(self, k):\n    del self.cache[k]\n",
    "nested subscript": "def m(self, k, v):\n    self.tree['a'][k] = v\n",
    "tuple target": "def m(self):\n    self.a, self.b = 1, 2\n",
    "match": "def m(self, cmd):\n    match cmd:\n        case 'add':\n            self.n += 1\n        case _:\n            pass\n",
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
