"""Errors the kernel raises on purpose.

Every error meant for a person derives from :class:`BatosError`, so the CLI can
print its message as one line and exit non-zero, and let anything else (a real
bug) surface with its traceback.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """Every ``code`` an ``error`` reply can carry; the README lists them all.

    A ``str`` enum so that a code travels on the wire as its plain value and
    compares equal to it, while the kernel can only name codes that exist.
    """

    BAD_MSGPACK = "bad_msgpack"  # the frame is not msgpack
    BAD_REQUEST = "bad_request"  # msgpack, but not a valid request
    BAD_VERSION = "bad_version"  # a protocol version this kernel does not speak
    UNKNOWN_KIND = "unknown_kind"  # not send, ping or inspect
    BAD_FRAMES = "bad_frames"  # a multipart message of the wrong shape
    UNKNOWN_TARGET = "unknown_target"  # no root of that name, no object at that OID
    BAD_SELECTOR = "bad_selector"  # not a plain, public identifier
    BAD_ARGUMENTS = "bad_arguments"  # arguments the method's signature does not accept
    NOT_CALLABLE = "not_callable"  # arguments sent to a slot that holds data
    NOT_UNDERSTOOD = "not_understood"  # unknown selector and nothing to learn it with
    CYCLE_FAILED = "cycle_failed"  # the cognitive cycle ended without a method
    METHOD_ERROR = "method_error"  # the method raised; the message names the exception
    METHOD_TIMEOUT = "method_timeout"  # a stored method ran past its wall-clock or CPU limit and was killed
    METHOD_MEMORY = "method_memory"  # a stored method ran out of its address-space limit
    METHOD_KILLED = "method_killed"  # the sandbox killed a stored method (a forbidden system call, a crash, a protocol breach)
    SANDBOX_UNAVAILABLE = "sandbox_unavailable"  # stored methods cannot run: no sandbox, or an unprotected one not allowed
    CONFLICT = "conflict"  # write conflicts outlasted every retry
    REFUSED = "refused"  # a request the image's rules refuse (a BatosError)
    INTERNAL = "internal"  # a bug in the kernel; the request still gets its reply


class BatosError(Exception):
    """An error whose message is fit to show the Architect as-is.

    ``code`` is what the kernel puts in the ``error`` reply when this error
    ends a request.
    """

    exit_code = 1
    code: ErrorCode = ErrorCode.REFUSED


class ImageError(BatosError):
    """The image cannot be opened, created or read (missing, corrupt, locked...)."""


class SchemaError(ImageError):
    """The image's schema version is not one this kernel can serve."""


class InvalidName(BatosError, ValueError):
    """A root name, slot name or selector that is not allowed."""


class NoSuchVersion(BatosError, LookupError):
    """A method version that is not in the method's history."""


class MethodSourceError(BatosError, ValueError):
    """Method source that does not define the method it claims to define."""


class ModelAssemblyError(BatosError):
    """The embedded model could not be assembled or failed its checksum."""


class CodedError(BatosError):
    """A refusal whose wire code is chosen where it is raised (the kernel's, the wire's)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class MessageNotUnderstood(AttributeError):
    """An object (and all its ancestors) has no slot or method by this name.

    It subclasses :class:`AttributeError` so that Python's own protocols
    (``hasattr``, ``getattr`` with a default, copy, pickle) keep working; the
    kernel catches it specifically and turns it into ``_doesNotUnderstand_``.
    """

    def __init__(self, receiver: object, selector: str) -> None:
        name = receiver.__dict__.get("name")  # an own slot; the lookup has loaded the receiver
        label = name if isinstance(name, str) else type(receiver).__name__
        super().__init__(f"{label} does not understand {selector!r}")
        self.receiver = receiver
        self.selector = selector


class MethodFault(CodedError):
    """A stored method did not produce a result: it raised, or the sandbox it
    runs in stopped it. ``exc_type`` names the method's own exception, if any."""

    def __init__(self, code: ErrorCode, message: str, exc_type: str | None = None) -> None:
        super().__init__(code, message)
        self.exc_type = exc_type


class MethodsNotRunnable(MethodFault):
    """Stored methods run only in a sandbox; this process has none installed."""

    def __init__(self, message: str = "stored methods run only in a sandboxed worker, and no method runtime is installed in this process") -> None:
        super().__init__(ErrorCode.SANDBOX_UNAVAILABLE, message)
