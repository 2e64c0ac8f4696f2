"""Shape repairs: model output with the right code in the wrong shape becomes one method, and says what changed."""

from __future__ import annotations

import pytest

from batos.cognition.guardian import audit
from batos.cognition.repairs import normalised, repair

MARKED = "added `self._p_changed = True` where the method returns after changing a slot in place"

CASES = {
    "a plain function with recursion": (
        "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n", "fact", (),
        "def fact(self, n):\n    return 1 if n < 2 else n * self.fact(n - 1)\n",
        ["added self as the first parameter", "calls to fact(...) now go to self.fact(...)"],
    ),
    "the wrong name": (
        "```python\ndef factorial(n):\n    return 1 if n < 2 else n * factorial(n - 1)\n\nprint(factorial(5))\n```", "fact", (),
        "def fact(self, n):\n    return 1 if n < 2 else n * self.fact(n - 1)\n",
        ["renamed factorial to fact", "added self as the first parameter", "calls to factorial(...) now go to self.fact(...)"],
    ),
    "a staticmethod in a class calling the receiver's method": (
        "class Counter:\n    @staticmethod\n    def get(x):\n        return setNum(x) + 1\n", "get", ("setNum",),
        "def get(self, x):\n    return self.setNum(x) + 1\n",
        ["took get out of class Counter", "removed decorator @staticmethod", "added self as the first parameter",
         "calls to setNum(...) now go to self.setNum(...)"],
    ),
    "a classmethod": (
        "class A:\n    @classmethod\n    def make(cls, v):\n        return cls.size + v\n", "make", (),
        "def make(self, v):\n    return self.size + v\n",
        ["took make out of class A", "removed decorator @classmethod", "renamed cls to self"],
    ),
    "helpers, constants and imports at module level": (
        "import re\nVOWELS = 'aeiou'\n\ndef is_vowel(c):\n    return c in VOWELS\n\ndef count_vowels(s):\n"
        "    return sum(1 for c in s if is_vowel(c))\n\nresult = count_vowels('hello')\n", "count_vowels", (),
        "import re\n\ndef count_vowels(self, s):\n    VOWELS = 'aeiou'\n\n    def is_vowel(c):\n        return c in VOWELS\n"
        "    return sum((1 for c in s if is_vowel(c)))\n",
        ["added self as the first parameter", "moved constant VOWELS into the method", "moved helper function is_vowel into the method"],
    ),
    "a method with its helper outside": (
        "def helper(x):\n    return x * 2\n\ndef twice(self, x):\n    return helper(x)\n", "twice", (),
        "def twice(self, x):\n\n    def helper(x):\n        return x * 2\n    return helper(x)\n",
        ["moved helper function helper into the method"],
    ),
    "the entry point among several functions": (
        "def square(x):\n    return x * x\n\ndef total(xs):\n    return sum(square(x) for x in xs)\n", "sum_squares", (),
        "def sum_squares(self, xs):\n\n    def square(x):\n        return x * x\n    return sum((square(x) for x in xs))\n",
        ["renamed total to sum_squares", "added self as the first parameter", "moved helper function square into the method"],
    ),
    "a local name shadows the receiver's method": (
        "def run(items):\n    setNum = len\n    return setNum(items)\n", "run", ("setNum",),
        "def run(self, items):\n    setNum = len\n    return setNum(items)\n",
        ["added self as the first parameter"],
    ),
    # regression: the 1.5B model copied the protocol's first-use idiom onto the persistence flag,
    # and the guardian rejected the pure function `chunk` for it (bench/specs.json)
    "the persistence flag tested and reset": (
        "```python\ndef chunk(self, items, size):\n    if not hasattr(self, \"_p_changed\"):\n        self._p_changed = False\n\n"
        "    result = []\n    for i in range(0, len(items), size):\n        result.append(items[i:i + size])\n"
        "    self._p_changed = True\n    return result\n```", "chunk", (),
        "def chunk(self, items, size):\n    result = []\n    for i in range(0, len(items), size):\n        result.append(items[i:i + size])\n"
        "    self._p_changed = True\n    return result\n",
        ["removed 1 statement(s) that reset _p_changed"],
    ),
    # regression: a pasted pure function came back with the protocol's first-use idiom for a slot
    # it never uses, which left `entries: []` on the object (bench/specs.json, compress_runs)
    "a first use of a slot the method never uses": (
        "def compress_runs(self, text):\n    if not hasattr(self, 'entries'):\n        self.entries = []\n    return text.upper()\n",
        "compress_runs", (),
        "def compress_runs(self, text):\n    return text.upper()\n",
        ["removed the first use of slot entries, which the method never uses"],
    ),
    "a first use of a slot the method does use is kept": (
        "def add(item):\n    if not hasattr(self, 'entries'):\n        self.entries = []\n    self.entries = self.entries + [item]\n"
        "    return self.entries\n", "add", (),
        "def add(self, item):\n    if not hasattr(self, 'entries'):\n        self.entries = []\n    self.entries = self.entries + [item]\n"
        "    return self.entries\n",
        ["added self as the first parameter"],
    ),
    "a set-up method keeps its first use": (
        "def setup():\n    if not hasattr(self, 'items'):\n        self.items = []\n    return True\n", "setup", (),
        "def setup(self):\n    if not hasattr(self, 'items'):\n        self.items = []\n    return True\n",
        ["added self as the first parameter"],
    ),
    "a first use for another method keeps it": (
        "def record(x):\n    if not hasattr(self, 'log'):\n        self.log = []\n    return add_entry(x)\n", "record", ("add_entry",),
        "def record(self, x):\n    if not hasattr(self, 'log'):\n        self.log = []\n    return self.add_entry(x)\n",
        ["added self as the first parameter", "calls to add_entry(...) now go to self.add_entry(...)"],
    ),
    # regression: bench/specs.json title_case is pasted with minor=['a', 'an', ...]; the guardian refused
    # its own signature on every one of 7 candidates
    "a list literal default": (
        "def title_case(text, minor=['a', 'of'], *, sep=[' ']):\n    return sep[0].join(w if w in minor else w.title() for w in text.split())\n",
        "title_case", (),
        "def title_case(self, text, minor=('a', 'of'), *, sep=(' ',)):\n    return sep[0].join((w if w in minor else w.title() for w in text.split()))\n",
        ["added self as the first parameter", "the default of minor is a tuple, not a list (a list default is shared by every call)",
         "the default of sep is a tuple, not a list (a list default is shared by every call)"],
    ),
    "the flag reset inside a loop, the whole body": (
        "def f(self, xs):\n    for x in xs:\n        self._p_changed = False\n    return 1\n", "f", (),
        "def f(self, xs):\n    for x in xs:\n        pass\n    return 1\n",
        ["removed 1 statement(s) that reset _p_changed"],
    ),
    # the stateful bench's most common rejection: "returns after mutating self without `self._p_changed = True`"
    "an in-place change returned without the mark": (
        "def add_todo(self, item):\n    if not hasattr(self, 'todo'):\n        self.todo = []\n    self.todo.append(item)\n"
        "    return self.todo\n", "add_todo", (),
        "def add_todo(self, item):\n    if not hasattr(self, 'todo'):\n        self.todo = []\n    self.todo.append(item)\n"
        "    self._p_changed = True\n    return self.todo\n",
        [MARKED],
    ),
    "a return whose value is the change": (
        "def pop(self):\n    if not self.stack:\n        raise ValueError('empty')\n    return self.stack.pop()\n", "pop", (),
        "def pop(self):\n    if not self.stack:\n        raise ValueError('empty')\n    result = self.stack.pop()\n"
        "    self._p_changed = True\n    return result\n",
        [MARKED],
    ),
    "a change in a loop, an early return and a fall off the end, result already a name": (
        "def record(self, name, result):\n    for k in list(self.scores):\n        if k == name:\n"
        "            return self.scores.pop(k)\n    self.scores[name] = result\n", "record", (),
        "def record(self, name, result):\n    for k in list(self.scores):\n        if k == name:\n"
        "            result_1 = self.scores.pop(k)\n            self._p_changed = True\n            return result_1\n"
        "    self.scores[name] = result\n    self._p_changed = True\n",
        [MARKED],
    ),
    "a nested function's return is its own": (
        "def tally(self, word):\n    def norm(w):\n        return w.lower()\n    self.counts[norm(word)] = 1\n    return len(self.counts)\n",
        "tally", (),
        "def tally(self, word):\n\n    def norm(w):\n        return w.lower()\n    self.counts[norm(word)] = 1\n"
        "    self._p_changed = True\n    return len(self.counts)\n",
        [MARKED],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_repairs(name):
    text, selector, methods, source, repairs = CASES[name]
    fixed = repair(text, selector, methods)
    assert (fixed.source, fixed.repairs) == (source, repairs)
    assert audit(fixed.source, selector).accepted


@pytest.mark.parametrize("text", [
    "def m(self, x):\n    # a comment kept\n    return x\n",  # already a method: left to the guardian, comments intact
    "I cannot help with that.",  # no code
    "def a(x):\n    return x\n\ndef b(y):\n    return a(y) + b(y)\n\ndef c(z):\n    return z\n",  # two entry points: a guess
    "def broken(:\n",  # not Python
    "def m(self, x):\n    self.items.append(x)\n    self._p_changed = True\n    return len(self.items)\n",  # keeps the covenant
])
def test_nothing_to_repair_leaves_the_text_to_the_guardian(text):
    assert repair(text, "m").source is None


def test_a_mark_however_written_is_left_to_the_guardian():
    """Only resets of the flag are dropped: raising it, however clumsily, is kept for the guardian to judge."""
    fixed = repair("def mark(x):\n    if not self._p_changed:\n        self._p_changed = True\n    return x\n", "mark")
    assert fixed.source == "def mark(self, x):\n    if not self._p_changed:\n        self._p_changed = True\n    return x\n"
    assert "Line 2:" in audit(fixed.source, "mark").feedback()


def test_normalised_shape_ignores_docstrings_comments_and_layout():
    a = "def f(self, n):\n    '''Twice.'''\n    return n * 2\n"
    b = "def f(self,n):\n  # twice\n  return (n*2)\n"
    c = "def f(self, n):\n    return n * 3\n"
    assert normalised(a) == normalised(b) != normalised(c)


def test_a_change_through_an_alias_the_mark_cannot_fix_is_left_to_the_guardian():
    """``return items.pop()`` changes the object through an alias the return's own check cannot see:
    marking before it would still break the covenant, so the method goes to the guardian as written."""
    text = "def take(self):\n    items = self.items\n    return items.pop()\n"
    assert repair(text, "take").source is None
    assert "returns after mutating self" in audit(text, "take").feedback()


TALLY = ("def add_text(self, text):\n    words = text.split()\n    self.tally = {}\n    for word in words:\n"
         "        self.tally[word] = self.tally.get(word, 0) + 1\n    self._p_changed = True\n    return len(words)\n")


def test_a_slot_emptied_on_every_call_before_adding_to_it_is_created_only_when_missing():
    """Regression (bench word_counter): add_text set ``self.tally = {}`` on every call, so the tally only ever
    held the last text; each call returned the right count, so the trial's second call could not tell."""
    fixed = repair(TALLY, "add_text", intent="add the words of the text to a tally this object keeps (none at first)")
    assert fixed.source == ("def add_text(self, text):\n    words = text.split()\n    if not hasattr(self, 'tally'):\n        self.tally = {}\n"
                            "    for word in words:\n        self.tally[word] = self.tally.get(word, 0) + 1\n"
                            "    self._p_changed = True\n    return len(words)\n")
    assert fixed.repairs == ["`self.tally = {}` ran on every call and threw away what earlier calls kept: it now runs only when the slot is missing"]
    assert audit(fixed.source, "add_text").accepted


@pytest.mark.parametrize("text, intent", [
    (TALLY, "replace the tally with the words of the text"),  # starting over is the point
    (TALLY, None),  # no intent: the bare arm of the bench, and callers that only reshape
    ("def rebuild(self):\n    self.index = {}\n    for x in self.items:\n        self.index[x] = 1\n    self._p_changed = True\n    return self.index\n",
     "index the items by name"),  # rebuilt from another slot
    ("def start(self, item):\n    self.todos = [item]\n    return self.todos\n", "start a todo list with the item"),  # not empty
    ("def zero(self):\n    self.count = 0\n    return self.count\n", "set the counter to zero"),  # nothing added after
])
def test_a_slot_set_on_every_call_is_left_alone_where_that_may_be_the_point(text, intent):
    assert repair(text, text.split("(")[0][4:], intent=intent).source is None


CART = ("def add_to_cart(self, item, qty):\n    if item in self.entries:\n        self.entries[item] += qty\n    else:\n"
        "        self.entries[item] = qty\n    self._p_changed = True\n    return self.entries[item]\n")


@pytest.mark.parametrize("text, created", [
    (CART, "{}"),  # an item store: a dict
    ("def add(self, x):\n    self.items.append(x)\n    self._p_changed = True\n    return len(self.items)\n", "[]"),
    ("def tag(self, t):\n    self.tags.add(t)\n    self._p_changed = True\n    return len(self.tags)\n", "set()"),
])
def test_a_slot_added_to_but_never_created_is_created_on_first_use(text, created):
    """Regression (bench shopping_cart, high_scores): ``self.entries[item] = qty`` on an object without the slot
    failed with AttributeError, and the model wrote the same method again at temperatures 0.6, 0.8 and 1.0."""
    selector = text.split("(")[0][4:]
    fixed = repair(text, selector, intent="keep it", slots=["name", "description"])
    slot = {"{}": "entries", "[]": "items", "set()": "tags"}[created]
    assert fixed.source.splitlines()[1:3] == [f"    if not hasattr(self, '{slot}'):", f"        self.{slot} = {created}"]
    assert fixed.repairs == [f"slot {slot} is added to but was never created: it is now created on first use, as {created}"]
    assert audit(fixed.source, selector).accepted


@pytest.mark.parametrize("text, slots", [
    (CART, ["entries"]),  # the receiver has it
    (CART, None),  # slots unknown: the bench's bare arm
    ("def total(self):\n    return sum(self.items.values())\n", []),  # only read: no default is the answer
    ("def put(self, k, v):\n    if not hasattr(self, 'box'):\n        self.box = {}\n    self.box[k] = v\n    self._p_changed = True\n    return v\n", []),
    ("def mixed(self, x):\n    self.bag.append(x)\n    self.bag[x] = 1\n    self._p_changed = True\n    return x\n", []),  # list or dict?
])
def test_a_slot_is_not_created_where_its_use_does_not_say_so(text, slots):
    assert repair(text, text.split("(")[0][4:], intent="keep it", slots=slots).source is None


@pytest.mark.parametrize("text, slot, created", [
    ("def increment(self):\n    self.counter = self.counter + 1\n    return self.counter\n", "counter", "0"),
    ("def deposit(self, amount):\n    self.balance -= amount\n    return self.balance\n", "balance", "0"),
    ("def log(self, line):\n    self.text += '\\n'\n    return self.text\n", "text", "''"),
    ("def more(self, x):\n    self.seen += [x]\n    return self.seen\n", "seen", "[]"),
])
def test_a_count_updated_but_never_created_is_created_on_first_use(text, slot, created):
    """Regression (bench counter): ``self.counter = self.counter + 1`` on an object without the slot failed with
    AttributeError twice, and the cycle then installed ``return 1``, which its trial cannot tell from a counter."""
    fixed = repair(text, text.split("(")[0][4:], intent="keep it", slots=[])
    assert fixed.source.splitlines()[1:3] == [f"    if not hasattr(self, '{slot}'):", f"        self.{slot} = {created}"]
    assert fixed.repairs == [f"slot {slot} is added to but was never created: it is now created on first use, as {created}"]


@pytest.mark.parametrize("text", [
    "def inc(self):\n    self.c = 5\n    self.c += 1\n    return self.c\n",  # it sets the slot itself
    "def inc(self):\n    self.c = getattr(self, 'c', 0) + 1\n    return self.c\n",  # it handles a missing slot
    "def inc(self):\n    self.c = 1 + self.c\n    return self.c\n",  # not the read-modify-write shape: left to fail
])
def test_a_count_is_not_created_where_the_method_sees_to_it(text):
    assert repair(text, "inc", intent="keep it", slots=[]).source is None
