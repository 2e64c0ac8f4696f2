"""A blocking kernel client: DEALER socket, stable identity, Lazy Pirate.

Lazy Pirate (the ZeroMQ guide's reliable request-reply pattern): wait a short
time for the first answer; if none comes, close the socket, reconnect and
resend the *same* request id, a bounded number of times. The kernel keeps a
ledger of request ids, so a resent message is never executed twice. Once a
request is acknowledged, the client waits for its final reply up to the
overall time-out, showing progress replies as they come.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import zmq
from pydantic import ValidationError

from batos.core.errors import BatosError
from batos.wire.curve import CurveKeyError, public_key, secret_keypair
from batos.wire.protocol import DEFAULT_ENDPOINT, FINAL_KINDS, PROTOCOL_VERSION, WRITING, Inspect, Ping, Send, decode_reply, encode



class NoAnswer(BatosError):
    """No kernel answered in time."""

    exit_code = 3


@dataclass(frozen=True)
class CurveKeys:
    """The kernel's public key and this client's key pair (``batos keys generate``)."""

    server_public_file: Path
    client_secret_file: Path


def parse_word(text: str) -> Any:
    """A command-line argument: a JSON literal when it parses (5, 2.5, true, [1,2],
    {"a":1}, "5"), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def new_id() -> str:
    return uuid.uuid4().hex


def make_send(target: str, selector: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None, intent: str | None = None) -> Send:
    return Send(v=PROTOCOL_VERSION, id=new_id(), kind="send", target=target, selector=selector, args=args or [], kwargs=kwargs or {}, intent=intent)


def make_ping() -> Ping:
    return Ping(v=PROTOCOL_VERSION, id=new_id(), kind="ping")


def make_inspect(what: str, target: str | None = None, selector: str | None = None) -> Inspect:
    return Inspect(v=PROTOCOL_VERSION, id=new_id(), kind="inspect", what=what, target=target, selector=selector)


class KernelClient:
    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        identity: bytes | None = None,
        answer_timeout: float = 2.5,
        retries: int = 3,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.identity = identity or f"batos-client-{uuid.uuid4().hex[:12]}".encode()
        self.answer_timeout = answer_timeout
        self.retries = retries
        self.curve = curve
        self.context = zmq.Context()
        self.socket = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.identity)
        sock.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            try:
                server_public = public_key(self.curve.server_public_file)
                public, secret = secret_keypair(self.curve.client_secret_file)
            except CurveKeyError:
                sock.close(0)
                raise
            sock.curve_serverkey = server_public
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        sock.connect(self.endpoint)
        return sock

    def reconnect(self) -> None:
        self.socket.close(linger=0)
        self.socket = self._connect()

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()

    def __enter__(self) -> "KernelClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, message: Send | Ping | Inspect, *, timeout: float = 60.0, on_reply: Callable[[Any], None] | None = None) -> Any:
        """Send *message* and return its final reply (result, pong, view or error)."""
        frame = encode(message)
        deadline = time.monotonic() + timeout
        tries = 0
        answered = False
        self.socket.send(frame)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if not answered:
                    raise NoAnswer(f"no kernel answering at {self.endpoint} within {timeout:g}s")
                raise NoAnswer(f"the kernel at {self.endpoint} accepted the message but sent no result within {timeout:g}s")
            wait = remaining if answered else min(remaining, self.answer_timeout)
            if self.socket.poll(int(wait * 1000), zmq.POLLIN):
                reply = self._decode(self.socket.recv())
                if reply.id != message.id:
                    continue  # a late reply to an earlier, abandoned request
                if reply.kind in FINAL_KINDS:
                    return reply
                answered = True
                if on_reply is not None:
                    on_reply(reply)
            elif not answered:
                tries += 1
                if tries > self.retries:
                    raise NoAnswer(f"no kernel answering at {self.endpoint} (tried {tries} times)")
                self.reconnect()
                self.socket.send(frame)

    @staticmethod
    def _decode(frame: bytes) -> Any:
        try:
            return decode_reply(frame)
        except (ValueError, TypeError, ValidationError) as exc:
            raise BatosError(f"the kernel sent a reply this client cannot read: {exc}") from None


def connect(endpoint: str, server_key: str | None = None, client_key: str | None = None, **kw: Any) -> KernelClient:
    """A client for *endpoint*, with CURVE when both key files are given (one alone is refused)."""
    curve = None
    if server_key or client_key:
        if not (server_key and client_key):
            raise BatosError("--curve-server-key and --curve-client-key go together")
        curve = CurveKeys(Path(server_key), Path(client_key))
    return KernelClient(endpoint, curve=curve, **kw)


class ProgressPrinter:
    """Shows progress replies: one line per step, and the method being written
    inline, piece by piece, as the model writes it."""

    def __init__(self, write: Callable[[str], None], indent: str = "") -> None:
        self.write = write
        self.indent = indent
        self.streaming = False

    def __call__(self, reply: Any) -> None:
        if reply.kind != "progress":
            return
        if reply.state == WRITING:
            if not self.streaming:
                self.write(f"{self.indent}[{WRITING}]\n")
                self.streaming = True
            self.write(reply.detail)
            return
        if self.streaming:
            self.write("\n")
            self.streaming = False
        self.write(f"{self.indent}[{reply.state}] {reply.detail}\n")
