"""The kernel core, driven directly (no sockets): sends, errors, values, inspect."""

from __future__ import annotations

import threading

import pytest
from ZODB.POSException import ConflictError
from BTrees.OOBTree import OOBTree
from persistent.list import PersistentList

from batos.kernel.core import Kernel, KernelConfig, RequestLedger
from batos.core.txn import transact
from batos.wire.protocol import PROTOCOL_VERSION, Error, Inspect, Result, Send, View

COUNTER = """\
def bump(self, by=1):
    self.count = self.get_count() + by
    return self.count
"""
GET_COUNT = """\
def get_count(self):
    return self.count if "count" in self.slot_names() else 0
"""
FAILING = """\
def explode(self):
    self.count = -1
    raise ValueError("boom")
"""


def send(kernel, target, selector, *args, **kwargs):
    return kernel.send(Send(v=PROTOCOL_VERSION, id="r", kind="send", target=target, selector=selector, args=list(args), kwargs=kwargs))


def inspect(kernel, what, target=None, selector=None):
    return kernel.inspect(Inspect(v=PROTOCOL_VERSION, id="i", kind="inspect", what=what, target=target, selector=selector))


@pytest.fixture
def kernel(image):
    def install(root):
        g = root["genesis"]
        g.define_method("bump", COUNTER)
        g.define_method("get_count", GET_COUNT)
        g.define_method("explode", FAILING)
        g.define_method("echo", "def echo(self, *args, **kwargs):\n    return [list(args), kwargs]\n")

    transact(image.db, install)
    return Kernel(image, KernelConfig())


def tid(kernel):
    return kernel.image.db.lastTransaction()


def test_send_runs_a_method_and_commits(kernel):
    reply = send(kernel, "genesis", "bump", 5)
    assert reply == Result(id="r", value=5)
    assert send(kernel, "genesis", "bump", by=2).value == 7
    assert send(kernel, "genesis", "count").value == 7  # a slot read


def test_methods_found_on_parents_answer(kernel):
    assert send(kernel, "brick", "system_prompt").value.startswith("You are BRICK")


def test_a_method_that_raises_aborts_its_transaction(kernel):
    send(kernel, "genesis", "bump", 3)
    before = tid(kernel)
    reply = send(kernel, "genesis", "explode")
    assert isinstance(reply, Error)
    assert (reply.code, reply.exc_type, reply.message) == ("method_error", "ValueError", "ValueError: boom (line 3 of explode)")
    assert tid(kernel) == before
    assert send(kernel, "genesis", "count").value == 3


@pytest.mark.parametrize(
    "target, selector, args, kwargs, code",
    [
        ("nobody", "about", [], {}, "unknown_target"),
        ("_batos", "about", [], {}, "unknown_target"),
        ("0x0", "about", [], {}, "unknown_target"),  # the root mapping is not a UvmObject
        ("0xffffff", "about", [], {}, "unknown_target"),
        ("0xzz", "about", [], {}, "unknown_target"),
        ("0x" + "f" * 20, "about", [], {}, "unknown_target"),
        ("genesis", "_p_jar", [], {}, "bad_selector"),
        ("genesis", "__class__", [], {}, "bad_selector"),
        ("genesis", "__init__", [], {}, "bad_selector"),
        ("genesis", "not-an-identifier", [], {}, "bad_selector"),
        ("genesis", "_doesNotUnderstand_", ["x", [], {}, None], {}, "bad_selector"),
        ("genesis", "bump", [1, 2], {}, "bad_arguments"),
        ("genesis", "bump", [], {"nope": 1}, "bad_arguments"),
        ("genesis", "bump", [1], {"by": 1}, "bad_arguments"),
        ("genesis", "echo", [], {"_private": 1}, "bad_arguments"),
        ("genesis", "name", [1], {}, "not_callable"),
        ("genesis", "factorial", [5], {}, "not_understood"),
        ("genesis", "bump", [{"$ref": "0xffffff"}], {}, "unknown_target"),
    ],
)
def test_bad_sends_get_an_error_code_and_change_nothing(kernel, target, selector, args, kwargs, code):
    before = tid(kernel)
    reply = send(kernel, target, selector, *args, **kwargs)
    assert isinstance(reply, Error), reply
    assert reply.code == code, reply.message
    assert tid(kernel) == before


def test_not_understood_names_the_receiver(kernel):
    reply = send(kernel, "genesis", "factorial", 5)
    assert reply.message.startswith("genesis does not understand 'factorial'")


def test_objects_cross_the_wire_as_references(kernel):
    ref = send(kernel, "genesis", "clone").value
    assert ref["root"] is None and ref["$ref"].startswith("0x")
    # The new object was committed with the message and can be a target now.
    assert send(kernel, ref["$ref"], "bump").value == 1
    assert send(kernel, "genesis", "parents").value[0]["root"] == "traits"
    # ... and an argument: {"$ref": OID} arrives as the object itself.
    echoed = send(kernel, "genesis", "echo", {"$ref": ref["$ref"]}).value
    assert echoed[0][0]["$ref"] == ref["$ref"]


def test_return_values_are_msgpack_native(kernel, image):
    def install(root):
        g = root["genesis"]
        g.plist = PersistentList([1, 2])
        g.tree = OOBTree({"a": 1})
        g.define_method(
            "odd",
            "def odd(self):\n"
            "    return {'big': 2**80, 'set': {1}, 'nested': [(1, 2)], 'plist': self.plist, 'tree': self.tree,\n"
            "            'bytes': b'x', 3: 'int key', 'obj': object}\n",
        )

    transact(image.db, install)
    value = send(kernel, "genesis", "odd").value
    assert value["big"] == {"$repr": str(2**80), "type": "int"}
    assert value["set"] == {"$repr": "{1}", "type": "set"}
    assert value["nested"] == [[1, 2]]
    assert value["plist"] == [1, 2]
    assert value["tree"] == {"a": 1}
    assert value["bytes"] == b"x"
    assert value["3"] == "int key"
    assert value["obj"]["type"] == "type"


def test_concurrent_sends_to_one_object_lose_nothing(kernel):
    """Threads racing on one counter: conflicts are retried, every bump counts."""
    errors = []

    def worker():
        for _ in range(25):
            reply = send(kernel, "genesis", "bump")
            if isinstance(reply, Error):
                errors.append(reply)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert send(kernel, "genesis", "count").value == 100


def test_status(kernel):
    send(kernel, "genesis", "bump")
    status = kernel.status()
    assert status["handled"] == 1 and status["in_flight"] == 0
    assert status["image"] == kernel.image.uri
    assert status["protocol"] == PROTOCOL_VERSION


def test_inspect_views(kernel):
    roots = inspect(kernel, "roots")
    assert isinstance(roots, View)
    assert {r["root"] for r in roots.view["roots"]} >= {"genesis", "brick", "traits"}
    obj = inspect(kernel, "object", "brick").view
    assert obj["root"] == "brick"
    assert obj["parents"][0]["root"] == "pLLM"
    assert "codex" in obj["slots"]
    assert "system_prompt" in obj["inherited_methods"]
    source = inspect(kernel, "source", "brick", "system_prompt").view
    assert source["owner"]["root"] == "pLLM"
    assert source["source"].startswith("def system_prompt(self):")
    assert [h["version"] for h in source["history"]] == [1]


@pytest.mark.parametrize(
    "what, target, selector, code",
    [("object", None, None, "bad_request"), ("source", "genesis", None, "bad_request"),
     ("source", "genesis", "nothing", "not_understood"), ("object", "nobody", None, "unknown_target")],
)
def test_inspect_errors(kernel, what, target, selector, code):
    reply = inspect(kernel, what, target, selector)
    assert isinstance(reply, Error) and reply.code == code


def test_ledger_never_runs_a_retry_twice():
    ledger = RequestLedger(capacity=2)
    assert ledger.begin(b"c", "1") is None
    assert ledger.begin(b"c", "1") is RequestLedger.RUNNING
    ledger.finish(b"c", "1", "reply-1")
    assert ledger.begin(b"c", "1") == "reply-1"
    assert ledger.begin(b"other", "1") is None  # ids are per client
    ledger.begin(b"c", "2")
    ledger.begin(b"c", "3")  # capacity 2: the oldest is forgotten
    assert ledger.begin(b"c", "1") is None


def test_endless_conflicts_give_up_after_the_bound(kernel, image):
    """Every attempt conflicts (a stored method cannot raise ConflictError any
    more: it cannot import ZODB, so the conflict is raised around its call)."""
    source = "def contend(self):\n    self.calls = 1\n    return 1\n"
    transact(image.db, lambda root: root["genesis"].define_method("contend", source))
    calls = []
    original = kernel._call

    def conflicting(func, *args, **kwargs):
        calls.append(func)
        original(func, *args, **kwargs)
        raise ConflictError("always")

    kernel._call = conflicting
    before = tid(kernel)
    reply = send(kernel, "genesis", "contend")
    assert isinstance(reply, Error) and reply.code == "conflict"
    assert len(calls) == KernelConfig().conflict_attempts
    assert tid(kernel) == before


class _BrokenServices:
    """Loops whose handler has a bug: the kernel must still answer, with ``internal``."""

    def __init__(self) -> None:
        self.touched = 0

    def selectors(self):
        return frozenset({"contemplate"})

    def handler(self, receiver, selector):
        if (receiver, selector) == ("genesis", "contemplate"):
            return lambda args, intent, progress: {}["missing"]
        return None

    def summary(self):
        return {}

    def served(self, in_flight):
        self.in_flight = in_flight

    def touch(self):
        self.touched += 1


def test_a_kernel_bug_is_an_internal_error_reply_not_a_silence(image):
    services = _BrokenServices()
    kernel = Kernel(image, KernelConfig(), loops=services)
    reply = send(kernel, "genesis", "contemplate")
    assert isinstance(reply, Error)
    assert reply.code == "internal"
    assert reply.message == "internal error: KeyError: 'missing'"
    assert kernel.in_flight == 0 and kernel.handled == 1 and services.touched == 1


def test_loop_messages_resolve_their_receiver_first(image):
    """An unknown target is unknown_target even for a loop selector; an OID reaches the same handler."""
    services = _BrokenServices()
    kernel = Kernel(image, KernelConfig(), loops=services)
    missing = send(kernel, "nobody", "contemplate")
    assert isinstance(missing, Error) and missing.code == "unknown_target"
    genesis_oid = inspect(kernel, "object", "genesis").view["$ref"]
    by_oid = send(kernel, genesis_oid, "contemplate")
    assert isinstance(by_oid, Error) and by_oid.code == "internal"
