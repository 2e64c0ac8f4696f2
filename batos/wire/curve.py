"""CURVE key files, read the same way by the kernel and its clients."""

from __future__ import annotations

from pathlib import Path

import zmq.auth

from batos.core.errors import BatosError


class CurveKeyError(BatosError):
    """A CURVE key file that is missing, unreadable, or lacks the secret half."""


def _load(path: Path) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"cannot load CURVE key {path}: {exc}") from None


def secret_keypair(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file written by ``batos keys generate``."""
    public, secret = _load(path)
    if secret is None:
        raise CurveKeyError(f"{path} holds no secret key")
    return public, secret


def public_key(path: Path) -> bytes:
    """The public key of a ``.key`` (or ``.key_secret``) file."""
    return _load(path)[0]
