"""Fuzzing a live kernel: thousands of random and mutated frames over a real socket.

Every frame must get exactly one final reply (or, past the size limit, be
dropped); afterwards the kernel still answers and the image is unchanged.
"""

from __future__ import annotations

import ormsgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batos.schema.genesis import incarnate
from batos.core.image import open_image
from clients.client import KernelClient, make_ping

from .conftest import file_uri
from .kernelproc import KernelProcess

# Selectors that legitimately change the image; a mutated frame must not
# stumble on them, or "the image is unchanged" would not be the right check.
MUTATING = {"clone", "define_method", "revert_method", "forget_method"}

BASE = [
    {"v": 1, "id": "p", "kind": "ping"},
    {"v": 1, "id": "s", "kind": "send", "target": "genesis", "selector": "about"},
    {"v": 1, "id": "t", "kind": "send", "target": "brick", "selector": "system_prompt", "args": [], "kwargs": {}},
    {"v": 1, "id": "u", "kind": "send", "target": "genesis", "selector": "responds_to", "args": ["about"], "intent": "x"},
    {"v": 1, "id": "i", "kind": "inspect", "what": "object", "target": "brick"},
    {"v": 1, "id": "j", "kind": "inspect", "what": "source", "target": "traits", "selector": "about"},
    {"v": 1, "id": "k", "kind": "inspect", "what": "roots"},
]
KEYS = sorted({k for frame in BASE for k in frame} | {"extra"})

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=24) | st.binary(max_size=24),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_requests(draw) -> dict:
    frame = dict(draw(st.sampled_from(BASE)))
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(KEYS))
        if draw(st.booleans()):
            frame.pop(key, None)
        else:
            frame[key] = draw(values | st.sampled_from(["genesis", "about", "_p_jar", "__class__", "0x1", "0x0", "send", "ping", 1]))
    if isinstance(frame.get("selector"), str) and frame["selector"] in MUTATING:
        frame["selector"] = "about"
    return frame


@st.composite
def byte_mutations(draw) -> bytes:
    data = bytearray(ormsgpack.packb(draw(st.sampled_from(BASE))))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


frames = st.one_of(
    st.binary(max_size=400),
    values.map(ormsgpack.packb),
    mutated_requests().map(ormsgpack.packb),
    byte_mutations(),
)


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz")
    uri = file_uri(directory)
    with open_image(uri, create=True) as img:
        incarnate(img)
        before = img.db.lastTransaction()
    kernel = KernelProcess(uri, log=directory / "kernel.log")
    kernel.wait_ready()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(kernel.endpoint)
    stats = {"frames": 0, "errors": 0, "results": 0}
    yield kernel, uri, before, sock, stats
    sock.close()
    ctx.term()
    kernel.stop()


@settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(frame=frames)
def test_every_frame_gets_one_final_reply(target, frame):
    _kernel, _uri, _before, sock, stats = target
    sock.send(frame)
    while True:
        assert sock.poll(10_000), f"no reply to {frame!r}"
        reply = ormsgpack.unpackb(sock.recv())
        assert reply["v"] == 1
        if reply["kind"] in ("ack", "progress"):
            continue
        assert reply["kind"] in ("error", "result", "pong", "view"), reply
        if reply["kind"] == "error":
            assert isinstance(reply["code"], str) and reply["message"]
            stats["errors"] += 1
        else:
            stats["results"] += 1
        break
    stats["frames"] += 1


def test_after_fuzzing_the_kernel_answers_and_the_image_is_unchanged(target):
    kernel, uri, before, _sock, stats = target
    assert stats["frames"] >= 5000
    assert stats["errors"] > stats["frames"] // 2  # most fuzz must be refused...
    assert stats["results"] > 0  # ...and some mutated frames are still valid requests
    with KernelClient(kernel.endpoint) as client:
        status = client.request(make_ping()).status
    assert status["pid"] == kernel.proc.pid
    assert kernel.stop() == 0
    with open_image(uri) as img:
        assert img.db.lastTransaction() == before
