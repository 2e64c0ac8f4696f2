"""UvmObject: slots, delegation, clone, methods as source, the Persistence Covenant."""

from __future__ import annotations

import copy
import pickle

import pytest
import transaction

from batos.core.errors import InvalidName, MessageNotUnderstood, MethodSourceError, NoSuchVersion
from batos.core.image import open_image
from batos.core.txn import reading, transact
from batos.core.uvm import UvmObject, parse_method


@pytest.fixture
def db(image_uri):
    img = open_image(image_uri, create=True)
    yield img.db
    img.close()


@pytest.fixture
def conn(db):
    """A connection with its own explicit transaction manager, already begun."""
    tm = transaction.TransactionManager(explicit=True)
    c = db.open(transaction_manager=tm)
    tm.begin()
    yield c, tm
    tm.abort()
    c.close()


def reopen(uri):
    return open_image(uri)


# -- slots and _p_changed -----------------------------------------------------


def test_slots_read_and_write():
    obj = UvmObject(x=1, label="a")
    assert obj.x == 1
    assert obj.label == "a"
    obj.x = 2
    assert obj.x == 2
    assert obj.slot_names() == ["label", "parents", "x"]
    del obj.label
    assert obj.slot_names() == ["parents", "x"]
    with pytest.raises(MessageNotUnderstood):
        obj.label


def test_setting_a_slot_marks_object_changed(conn):
    c, tm = conn
    obj = UvmObject(x=1)
    c.root()["obj"] = obj
    tm.commit()
    tm.begin()
    assert obj._p_changed is False
    assert obj.x == 1
    assert obj._p_changed is False  # reading is not writing
    obj.x = 2
    assert obj._p_changed is True
    tm.commit()
    assert obj._p_changed is False
    storage = c.db().storage
    stored = [[record.oid for record in txn] for txn in storage.iterator(start=storage.lastTransaction())]
    assert stored == [[obj._p_oid]]  # a slot write stores one record: the object's
    obj._p_deactivate()
    assert obj._p_changed is None  # a ghost again; the next read reloads it
    tm.begin()
    assert obj.x == 2


def test_setting_p_changed_marks_the_object_that_holds_the_slots(conn):
    c, tm = conn
    obj = UvmObject(items=[])
    c.root()["obj"] = obj
    tm.commit()
    tm.begin()
    obj.items.append(1)
    assert obj._p_changed is False  # an in-place mutation is invisible to ZODB
    obj._p_changed = True
    assert obj._p_changed is True
    tm.commit()
    tm.begin()
    obj._p_invalidate()
    assert obj.items == [1]  # reloaded from the record


@pytest.mark.parametrize("read", ["own slot", "inherited slot", "method", "slot names", "internal", "describe"])
def test_every_kind_of_read_loads_a_ghost(image_uri, read):
    """Reads bypass Persistent's loading lookup, so each path must load a ghost itself."""
    img = open_image(image_uri, create=True)

    def build(root):
        proto = root["proto"] = UvmObject(greeting="hello")
        proto.define_method("shout", "def shout(self):\n    return self.greeting.upper()\n")
        root["obj"] = UvmObject(parents=[proto], name="obj", own=1)

    transact(img.db, build)
    reads = {
        "own slot": lambda obj: obj.own == 1,
        "inherited slot": lambda obj: obj.greeting == "hello",
        "method": lambda obj: obj.shout() == "HELLO",
        "slot names": lambda obj: obj.slot_names() == ["name", "own", "parents"],
        "internal": lambda obj: obj._methods is not None,
        "describe": lambda obj: obj.describe().startswith("obj: "),
    }
    with reading(img.db) as root:
        obj = root["obj"]
        obj._p_deactivate()
        root["proto"]._p_deactivate()
        assert obj._p_changed is None and obj.__dict__ == {}
        assert reads[read](obj)
    img.close()


def test_a_name_read_through_a_parent_never_goes_stale():
    """Inherited names get a class-level shortcut; it must hold no values."""
    top = UvmObject(v=1)
    child = UvmObject(parents=[top])
    assert child.v == 1  # the first inherited read of "v" installs the shortcut
    top.v = 2
    assert child.v == 2
    child.v = 3  # an own slot wins over the shortcut
    assert (child.v, top.v) == (3, 2)
    del child.v
    del top.v
    with pytest.raises(MessageNotUnderstood):
        child.v
    assert UvmObject(v="own").v == "own"


def test_unknown_name_raises_dedicated_error_that_is_an_attribute_error():
    obj = UvmObject()
    with pytest.raises(MessageNotUnderstood) as info:
        obj.frobnicate
    assert info.value.selector == "frobnicate"
    assert info.value.receiver is obj
    assert isinstance(info.value, AttributeError)
    assert not hasattr(obj, "frobnicate")
    assert getattr(obj, "frobnicate", 42) == 42


@pytest.mark.parametrize("name", ["_secret", "__class__x", "2fast", "with space", "class", "clone", "parents2 "])
def test_invalid_slot_names_are_refused(name):
    obj = UvmObject()
    with pytest.raises((InvalidName, AttributeError)):
        setattr(obj, name, 1)
    assert obj.slot_names() == ["parents"]


def test_private_attributes_cannot_be_planted():
    obj = UvmObject()
    with pytest.raises(InvalidName):
        obj._sneaky = 1
    assert "_sneaky" not in obj.__dict__


# -- delegation -----------------------------------------------------------------


def test_lookup_through_one_and_three_parents():
    root = UvmObject(greeting="hello")
    mid = UvmObject(parents=[root])
    low = UvmObject(parents=[mid])
    leaf = UvmObject(parents=[low])
    assert mid.greeting == "hello"
    assert leaf.greeting == "hello"
    low.greeting = "hi"
    assert leaf.greeting == "hi"  # the nearest definition wins
    assert mid.greeting == "hello"


def test_lookup_is_depth_first_in_parent_order():
    deep = UvmObject(v="deep")
    first = UvmObject(parents=[deep])
    second = UvmObject(v="second")
    child = UvmObject(parents=[first, second])
    # Depth-first: first's ancestor is searched before the second parent.
    assert child.v == "deep"
    assert [o for o in child.ancestors()] == [child, first, deep, second]


def test_cyclic_parent_graph_terminates():
    a = UvmObject()
    b = UvmObject(parents=[a])
    a.parents = [b]
    a.parents = (b, a)  # a self-loop too
    with pytest.raises(MessageNotUnderstood):
        b.missing
    assert list(b.ancestors()) == [b, a]


def test_parents_must_be_uvm_objects():
    with pytest.raises(InvalidName):
        UvmObject(parents=[object()])
    with pytest.raises(InvalidName):
        UvmObject(parents=5)
    assert UvmObject(parents=UvmObject()).parents.__class__ is tuple


# -- clone ------------------------------------------------------------------------


def test_clone_is_shallow_and_shares_parents():
    proto = UvmObject()
    big = [1, 2, 3]
    original = UvmObject(parents=[proto], data=big, n=1)
    original.define_method("double", "def double(self):\n    return self.n * 2\n")
    copy_ = original.clone(n=5)
    assert copy_ is not original
    assert copy_.parents == original.parents
    assert copy_.parents[0] is proto
    assert copy_.data is big  # shared, not deep-copied
    assert copy_.double() == 10
    assert original.double() == 2
    copy_.n = 7
    assert original.n == 1


def test_clone_does_not_walk_the_graph(monkeypatch):
    monkeypatch.setattr(copy, "deepcopy", lambda *a, **k: pytest.fail("clone must not deepcopy"))
    UvmObject(data={"a": [1]}).clone()


# -- methods as source ------------------------------------------------------------


def test_method_on_parent_runs_with_self_bound_to_receiver():
    proto = UvmObject(factor=10)
    proto.define_method("scale", "def scale(self, x):\n    return self.factor * x\n")
    child = UvmObject(parents=[proto], factor=3)
    assert child.scale(2) == 6
    assert proto.scale(2) == 20
    assert child.method_names() == []
    assert proto.responds_to("scale") and child.responds_to("scale")


def test_methods_are_stored_as_source_not_functions():
    obj = UvmObject()
    record = obj.define_method("ping", "def ping(self):\n    return 'pong'\n", author="BRICK", cycle="c-1")
    assert obj.ping() == "pong"
    state = pickle.dumps(record.__getstate__())
    assert b"pong" in state
    assert b"function" not in state
    assert (record.selector, record.version, record.author, record.cycle) == ("ping", 1, "BRICK", "c-1")
    assert record.created_at > 0
    assert record.previous == ()


@pytest.mark.parametrize(
    "source, reason",
    [
        ("def other(self):\n    return 1\n", "exactly one"),
        ("def f(x):\n    return 1\n", "first parameter"),
        ("def f():\n    return 1\n", "first parameter"),
        ("def f(x, self):\n    return 1\n", "first parameter"),
        ("async def f(self):\n    return 1\n", "async"),
        ("def f(self):\n    return (\n", "syntax error"),
        ("def f(self):\n    return 1\ndef f(self):\n    return 2\n", "exactly one"),
    ],
)
def test_bad_method_source_is_refused_and_nothing_installed(source, reason):
    obj = UvmObject()
    with pytest.raises(MethodSourceError, match=reason):
        obj.define_method("f", source)
    assert obj.method_names() == []


def test_compile_reports_the_line_of_a_syntax_error():
    with pytest.raises(MethodSourceError, match="Line 3"):
        parse_method("f", "def f(self):\n    x = 1\n    y = (\n")


def test_versions_history_and_revert():
    obj = UvmObject()
    obj.define_method("v", "def v(self):\n    return 1\n")
    obj.define_method("v", "def v(self):\n    return 2\n", author="BRICK", cycle="c-9")
    obj.define_method("v", "def v(self):\n    return 3\n")
    assert obj.v() == 3
    current = obj.method_record("v")
    assert [r.version for r in current.history] == [1, 2, 3]
    reverted = obj.revert_method("v")  # default: the version before the current one
    assert obj.v() == 2
    assert (reverted.version, reverted.reverted_from, reverted.author) == (4, 2, "architect")
    obj.revert_method("v", 1)
    assert obj.v() == 1
    assert [r.version for r in obj.method_record("v").history] == [1, 2, 3, 4, 5]
    with pytest.raises(NoSuchVersion):
        obj.revert_method("v", 99)
    assert obj.v() == 1


def test_revert_with_single_version_and_forget():
    obj = UvmObject()
    obj.define_method("once", "def once(self):\n    return 1\n")
    with pytest.raises(NoSuchVersion):
        obj.revert_method("once")
    obj.forget_method("once")
    with pytest.raises(MessageNotUnderstood):
        obj.once()
    with pytest.raises(MessageNotUnderstood):
        obj.forget_method("once")


def test_methods_survive_reopen_and_run_in_the_sandbox(image_uri):
    img = open_image(image_uri, create=True)

    def install(root):
        proto = root["proto"] = UvmObject(base=100)
        proto.define_method("add", "import math\n\ndef add(self, x):\n    return math.floor(self.base + x)\n")
        root["child"] = UvmObject(parents=[proto], base=1)

    transact(img.db, install)
    img.close()
    img = reopen(image_uri)
    with reading(img.db) as root:
        assert root["child"].add(2.5) == 3
    img.close()


def test_stored_source_never_runs_in_the_kernel_process():
    """Regression: compiling a record executed its module-level code (and its
    default arguments) in the kernel, on define and on every recompile."""
    import math

    obj = UvmObject()
    payload = "import math\nmath.batos_payload = 1\n\ndef f(self, x=math.floor(2.5)):\n    return (x, hasattr(math, 'batos_payload'))\n"
    obj.define_method("f", payload)
    assert obj.f() == (2, True)  # it ran, in the worker, on the worker's facade of math
    assert not hasattr(math, "batos_payload")


def test_revert_is_one_transaction(image_uri):
    img = open_image(image_uri, create=True)

    def install(root):
        obj = root["obj"] = UvmObject()
        obj.define_method("v", "def v(self):\n    return 1\n")

    transact(img.db, install)
    transact(img.db, lambda root: root["obj"].define_method("v", "def v(self):\n    return 2\n"))
    before = img.db.lastTransaction()
    transact(img.db, lambda root: root["obj"].revert_method("v"))
    txns = list(img.db.storage.iterator(start=before))
    assert len(txns) == 2  # the one at `before` and exactly one new one
    img.close()
    img = reopen(image_uri)
    with reading(img.db) as root:
        assert root["obj"].v() == 1
    img.close()


# -- the Persistence Covenant -----------------------------------------------------

APPEND_FORGETFUL = "def remember(self, item):\n    self.notes.append(item)\n"
APPEND_COVENANT = "def remember(self, item):\n    self.notes.append(item)\n    self._p_changed = True\n"


@pytest.mark.parametrize("source, breach", [(APPEND_FORGETFUL, True), (APPEND_COVENANT, False)])
def test_an_in_place_mutation_is_kept_and_a_missing_mark_is_a_covenant_breach(image_uri, caplog, source, breach):
    """Regression: in the kernel's process, a method mutating a plain list in a
    slot without ``self._p_changed = True`` lost the change on reopen. The
    sandbox returns every changed slot, so the change is kept either way, and
    the missing mark is recorded as a breach of the Covenant."""
    img = open_image(image_uri, create=True)

    def install(root):
        obj = root["obj"] = UvmObject(notes=[])
        obj.define_method("remember", source)

    transact(img.db, install)
    with caplog.at_level("WARNING", logger="batos.sandbox.runtime"):
        transact(img.db, lambda root: root["obj"].remember("x"))
    img.close()
    img = reopen(image_uri)
    with reading(img.db) as root:
        assert root["obj"].notes == ["x"]
    img.close()
    assert ("changed in place without _p_changed" in caplog.text) is breach


def test_runtime_operations_obey_the_covenant(image_uri):
    """Every mutation the runtime itself makes must survive a reopen."""
    img = open_image(image_uri, create=True)
    proto = None

    def build(root):
        nonlocal proto
        proto = root["proto"] = UvmObject(a=1, gone=2)
        proto.define_method("m", "def m(self):\n    return 'v1'\n")
        proto.define_method("n", "def n(self):\n    return 'n'\n")

    transact(img.db, build)

    def mutate(root):
        p = root["proto"]
        p.a = 2
        del p.gone
        p.define_method("m", "def m(self):\n    return 'v2'\n")
        p.forget_method("n")
        root["clone"] = p.clone(b=3)
        other = root["other"] = UvmObject()
        p.parents = [other]

    transact(img.db, mutate)
    img.close()
    img = reopen(image_uri)
    with reading(img.db) as root:
        p = root["proto"]
        assert p.a == 2
        assert p.slot_names() == ["a", "parents"]
        assert p.m() == "v2"
        assert p.method_names() == ["m"]
        assert root["clone"].b == 3 and root["clone"].m() == "v2"
        assert p.parents == (root["other"],)
    img.close()
