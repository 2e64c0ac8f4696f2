"""The wire protocol, without sockets: every way a frame can be wrong."""

from __future__ import annotations

import ormsgpack
import pytest

from batos.wire.protocol import Error, Pong, Result, WireError, decode_reply, decode_request, encode

GOOD = {"v": 1, "id": "r1", "kind": "send", "target": "genesis", "selector": "about"}


def frame(**changes):
    data = {**GOOD, **changes}
    return ormsgpack.packb({k: v for k, v in data.items() if v is not ...})


def test_a_good_send_round_trips():
    request = decode_request(frame(args=[1, "two", [3]], kwargs={"k": None}, intent="say hi"))
    assert (request.kind, request.target, request.selector, request.args, request.kwargs, request.intent) == (
        "send", "genesis", "about", [1, "two", [3]], {"k": None}, "say hi")
    assert decode_request(encode(request)) == request


@pytest.mark.parametrize(
    "payload, code, rid",
    [
        (b"\xc1", "bad_msgpack", None),
        (b"", "bad_msgpack", None),
        (ormsgpack.packb([1, 2]), "bad_request", None),
        (ormsgpack.packb("send"), "bad_request", None),
        (frame(v=2), "bad_version", "r1"),
        (frame(v=...), "bad_version", "r1"),
        (frame(kind="launch"), "unknown_kind", "r1"),
        (frame(kind=...), "unknown_kind", "r1"),
        (frame(target=...), "bad_request", "r1"),
        (frame(selector=5), "bad_request", "r1"),
        (frame(args="notalist"), "bad_request", "r1"),
        (frame(kwargs=[1]), "bad_request", "r1"),
        (frame(surprise=1), "bad_request", "r1"),
        (frame(id=""), "bad_request", None),
        (frame(id="x" * 65), "bad_request", None),
        (frame(id=7), "bad_request", None),
        (frame(target=""), "bad_request", "r1"),
        (frame(intent="x" * 20000), "bad_request", "r1"),
        (frame(args=list(range(65))), "bad_request", "r1"),
        (ormsgpack.packb({"v": 1, "id": "r1", "kind": "inspect", "what": "everything"}), "bad_request", "r1"),
    ],
)
def test_bad_frames_are_refused_with_a_code_and_the_request_id_when_known(payload, code, rid):
    with pytest.raises(WireError) as info:
        decode_request(payload)
    reply = info.value.reply
    assert isinstance(reply, Error)
    assert (reply.code, reply.id) == (code, rid)
    assert reply.message
    decode_reply(encode(reply))  # the error itself always encodes


def test_replies_round_trip():
    for reply in [Result(id="a", value={"x": [1, b"\x00"]}), Pong(id="b", status={"pid": 1}), Error(id=None, code="c", message="m")]:
        assert decode_reply(encode(reply)) == reply
