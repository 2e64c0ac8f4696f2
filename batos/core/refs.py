"""How objects are named to people and on the wire: one place for each rule."""

from __future__ import annotations

from typing import Any

from persistent import Persistent


def oid_hex(obj: Persistent) -> str:
    """An object's OID as the wire and the console write it: ``0x2a``."""
    return f"0x{int.from_bytes(obj._p_oid, 'big'):x}"


def oid_bytes(text: str) -> bytes | None:
    """``0x2a`` back to the 8-byte OID, or None when it is not one."""
    try:
        number = int(text, 16)
    except ValueError:
        return None
    if not 0 <= number < 2**64:
        return None
    return number.to_bytes(8, "big")


def name_of(obj: Any) -> str:
    """The short name of an object for messages: its ``name`` slot, else its description's head."""
    return obj.describe().split(":")[0]
