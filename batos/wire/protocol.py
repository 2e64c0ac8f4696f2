"""The wire protocol between the kernel and its clients (sans-IO).

Every frame is one msgpack map (``ormsgpack``) validated by a pydantic v2
model. Requests carry the protocol version ``v`` and a request ``id`` chosen
by the client; every reply echoes that id. A request is answered by zero or
more ``ack``/``progress`` replies and exactly one final reply: ``result``,
``pong``, ``view`` or ``error``.

Nothing here touches a socket, so the kernel core, the clients and the tests
all share these functions.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal, Union

import ormsgpack
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from batos.core.errors import CodedError, ErrorCode

PROTOCOL_VERSION = 1
ENDPOINT_ENV = "BATOS_ENDPOINT"
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
MAX_ID = 64
MAX_TEXT = 16_384

RequestId = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
Name = Annotated[str, Field(min_length=1, max_length=128)]


def default_endpoint() -> str:
    """Where the kernel listens and clients connect when told nothing: ``$BATOS_ENDPOINT`` or loopback 5555."""
    return os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# -- requests -----------------------------------------------------------------


class _Request(_Message):
    v: Literal[1]
    id: RequestId


class Send(_Request):
    """Send ``selector`` to ``target`` (a root name or an OID like ``0x2a``)."""

    kind: Literal["send"]
    target: Name
    selector: Name
    args: list[Any] = Field(default_factory=list, max_length=64)
    kwargs: dict[str, Any] = Field(default_factory=dict, max_length=64)
    intent: Annotated[str, Field(max_length=MAX_TEXT)] | None = None


class Ping(_Request):
    kind: Literal["ping"]


class Inspect(_Request):
    """Read-only views: ``roots``, one ``object``, or one method's ``source``."""

    kind: Literal["inspect"]
    what: Literal["roots", "object", "source"]
    target: Name | None = None
    selector: Name | None = None


Request = Annotated[Union[Send, Ping, Inspect], Field(discriminator="kind")]
_request_adapter: TypeAdapter[Send | Ping | Inspect] = TypeAdapter(Request)
REQUEST_KINDS = ("send", "ping", "inspect")


# -- replies ------------------------------------------------------------------


class _Reply(_Message):
    v: Literal[1] = PROTOCOL_VERSION
    id: str | None


class Ack(_Reply):
    kind: Literal["ack"] = "ack"


# A progress reply in this state carries, as its detail, the next piece of the
# method the model is writing: clients show the pieces inline as they come.
WRITING = "WRITING"


class Progress(_Reply):
    kind: Literal["progress"] = "progress"
    state: str
    detail: str = ""


class Result(_Reply):
    kind: Literal["result"] = "result"
    value: Any = None


class Pong(_Reply):
    kind: Literal["pong"] = "pong"
    status: dict[str, Any]


class View(_Reply):
    kind: Literal["view"] = "view"
    view: dict[str, Any]


class Error(_Reply):
    kind: Literal["error"] = "error"
    code: str  # an ErrorCode's value; kept a plain string so a newer kernel's code still decodes
    message: str
    exc_type: str | None = None

    @field_validator("code", mode="before")
    @classmethod
    def _code_value(cls, code: object) -> object:
        return code.value if isinstance(code, ErrorCode) else code


Reply = Annotated[Union[Ack, Progress, Result, Pong, View, Error], Field(discriminator="kind")]
_reply_adapter: TypeAdapter[Ack | Progress | Result | Pong | View | Error] = TypeAdapter(Reply)
FINAL_KINDS = frozenset({"result", "pong", "view", "error"})


class WireError(CodedError):
    """A frame that cannot be accepted; carries the error reply to send back."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        super().__init__(code, message)
        self.reply = Error(id=request_id, code=code, message=message)


def _salvage_id(data: object) -> str | None:
    """The request id of a frame that failed validation, when it has a usable one."""
    if isinstance(data, dict):
        rid = data.get("id")
        if isinstance(rid, str) and 0 < len(rid) <= MAX_ID:
            return rid
    return None


def decode_request(frame: bytes) -> Send | Ping | Inspect:
    """Parse and validate one request frame, or raise :class:`WireError`."""
    try:
        data = ormsgpack.unpackb(frame)
    except (ValueError, TypeError) as exc:
        raise WireError(ErrorCode.BAD_MSGPACK, f"frame is not valid msgpack: {exc}") from None
    rid = _salvage_id(data)
    if not isinstance(data, dict):
        raise WireError(ErrorCode.BAD_REQUEST, f"a request is a msgpack map, got {type(data).__name__}")
    if data.get("v") != PROTOCOL_VERSION:
        raise WireError(ErrorCode.BAD_VERSION, f"unsupported protocol version {data.get('v')!r}; this kernel speaks v{PROTOCOL_VERSION}", rid)
    if data.get("kind") not in REQUEST_KINDS:
        raise WireError(ErrorCode.UNKNOWN_KIND, f"unknown request kind {data.get('kind')!r}; expected one of {', '.join(REQUEST_KINDS)}", rid)
    try:
        return _request_adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "request"
        raise WireError(ErrorCode.BAD_REQUEST, f"{where}: {first['msg']}", rid) from None


def decode_reply(frame: bytes) -> Ack | Progress | Result | Pong | View | Error:
    return _reply_adapter.validate_python(ormsgpack.unpackb(frame))


def encode(message: _Message) -> bytes:
    return ormsgpack.packb(message.model_dump())
