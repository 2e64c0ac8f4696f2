"""Values between the kernel and a sandbox worker: plain data and references, never code.

The worker runs untrusted code, so what it sends back is parsed, not
unpickled: msgpack with a handful of tagged forms, decoded strictly (known
tags only, bounded depth and size). A reference to an object is its OID; the
kernel only honours references to objects the call was given
(:mod:`batos.sandbox.runtime`). Both sides share this module: the worker
imports it before it locks itself down.

Plain values travel as themselves (``None``, ``bool``, 64-bit ``int``,
``float``, ``str``, ``bytes``, ``list``, ``dict`` with string keys); the rest
as ``{"$": tag, "v": payload}``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, Callable

import ormsgpack

MAX_DEPTH = 64
MAX_ITEMS = 1_000_000
MAX_FRAME = 64 << 20
HEADER = struct.Struct(">I")


class CodecError(ValueError):
    """A value that cannot cross, or a frame that does not parse."""


@dataclass(frozen=True)
class Ref:
    """An object by OID (hex, ``0x2a``), as the other side names it."""

    oid: str


@dataclass(frozen=True)
class Opaque:
    """A slot value that is not plain data (a BTree, a model record): the
    worker sees a description it cannot change; the kernel keeps the original."""

    description: str


@dataclass(frozen=True, repr=False)
class Described:
    """A result that is not plain data, as ``repr`` wrote it (results only)."""

    type_name: str
    text: str

    def __repr__(self) -> str:
        return self.text


def encode(value: Any, ref: Callable[[Any], str | None], fallback: bool = False) -> Any:
    """*value* as msgpack-native data. ``ref`` gives an OID for an object that
    travels by reference (else None); with *fallback*, anything else becomes
    :class:`Described` instead of failing."""
    budget = [MAX_ITEMS]

    def walk(v: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > MAX_DEPTH:
            raise CodecError("the value is too large or too deeply nested to send")
        if v is None or isinstance(v, (bool, float, str, bytes)):
            return v
        if isinstance(v, int):
            return v if -(2**63) <= v < 2**64 else {"$": "int", "v": str(v)}
        if isinstance(v, list):
            return [walk(x, depth + 1) for x in v]
        if isinstance(v, tuple):
            return {"$": "tuple", "v": [walk(x, depth + 1) for x in v]}
        if isinstance(v, (set, frozenset)):
            return {"$": type(v).__name__, "v": [walk(x, depth + 1) for x in v]}
        if isinstance(v, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in v):
                return {k: walk(x, depth + 1) for k, x in v.items()}
            return {"$": "dict", "v": [[walk(k, depth + 1), walk(x, depth + 1)] for k, x in v.items()]}
        if isinstance(v, Ref):
            return {"$": "ref", "v": v.oid}
        if isinstance(v, Opaque):
            return {"$": "opaque", "v": v.description}
        if isinstance(v, Described):
            return {"$": "repr", "v": [v.type_name, v.text]}
        oid = ref(v)
        if oid is not None:
            return {"$": "ref", "v": oid}
        if fallback:
            try:
                text = repr(v)[:500]
            except Exception as exc:  # noqa: BLE001 - a broken __repr__ still describes something
                text = f"<unrepresentable: {type(exc).__name__}>"
            return {"$": "repr", "v": [type(v).__name__, text]}
        raise CodecError(f"a {type(v).__name__} cannot be stored: only plain data and objects can")

    return walk(value, 0)


def decode(data: Any, ref: Callable[[str], Any]) -> Any:
    """The inverse of :func:`encode`, strictly: an unknown tag or a malformed
    form is a :class:`CodecError`. ``ref`` turns an OID into the side's object."""
    budget = [MAX_ITEMS]

    def walk(v: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > MAX_DEPTH:
            raise CodecError("the value is too large or too deeply nested")
        if v is None or isinstance(v, (bool, int, float, str, bytes)):
            return v
        if isinstance(v, list):
            return [walk(x, depth + 1) for x in v]
        if not isinstance(v, dict):
            raise CodecError(f"unexpected {type(v).__name__} in a value")
        if "$" not in v:
            return {k: walk(x, depth + 1) for k, x in _str_keys(v).items()}
        tag, payload = v.get("$"), v.get("v")
        if set(v) != {"$", "v"}:
            raise CodecError(f"malformed tagged value {sorted(v)!r}")
        if tag == "tuple":
            return tuple(walk(x, depth + 1) for x in _list(payload))
        if tag in ("set", "frozenset"):
            items = [walk(x, depth + 1) for x in _list(payload)]
            try:
                return set(items) if tag == "set" else frozenset(items)
            except TypeError:
                raise CodecError("a set holds an unhashable value") from None
        if tag == "dict":
            pairs = [_list(p) for p in _list(payload)]
            if any(len(p) != 2 for p in pairs):
                raise CodecError("a dict entry is not a key and a value")
            try:
                return {walk(k, depth + 1): walk(x, depth + 1) for k, x in pairs}
            except TypeError:
                raise CodecError("a dict key is unhashable") from None
        if tag == "int" and isinstance(payload, str) and payload.lstrip("-").isdigit() and len(payload) <= 4000:  # int() refuses more than 4300 digits
            return int(payload)
        if tag == "ref" and isinstance(payload, str):
            return ref(payload)
        if tag == "opaque" and isinstance(payload, str):
            return Opaque(payload)
        if tag == "repr" and isinstance(payload, list) and len(payload) == 2 and all(isinstance(p, str) for p in payload):
            return Described(payload[0][:100], payload[1][:500])
        raise CodecError(f"unknown or malformed tag {tag!r}")

    return walk(data, 0)


def _list(v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise CodecError(f"expected a list, got {type(v).__name__}")
    return v


def _str_keys(v: dict[Any, Any]) -> dict[str, Any]:
    if not all(isinstance(k, str) for k in v):
        raise CodecError("a plain dict has a key that is not a string")
    return v


# -- frames: a length, then one msgpack document -------------------------------


def pack(message: dict[str, Any]) -> bytes:
    body = ormsgpack.packb(message)
    return HEADER.pack(len(body)) + body


def unpack(body: bytes) -> dict[str, Any]:
    try:
        message = ormsgpack.unpackb(body)
    except (ormsgpack.MsgpackDecodeError, ValueError) as exc:
        raise CodecError(f"unreadable frame: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise CodecError("a frame must be a map with an 'op'")
    return message


def read_exact(fd: int, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = os.read(fd, min(n - len(chunks), 1 << 20))
        if not chunk:
            raise EOFError
        chunks += chunk
    return bytes(chunks)


def read_frame(fd: int) -> bytes:
    """One frame's body; a header announcing more than ``MAX_FRAME`` is refused unread."""
    (size,) = HEADER.unpack(read_exact(fd, 4))
    if size > MAX_FRAME:
        raise CodecError(f"a frame of {size} bytes is over the limit")
    return read_exact(fd, size)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
