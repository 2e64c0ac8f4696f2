"""Errors the kernel raises on purpose.

Every error meant for a person derives from :class:`BatosError`, so the CLI can
print its message as one line and exit non-zero, and let anything else (a real
bug) surface with its traceback.
"""

from __future__ import annotations


class BatosError(Exception):
    """An error whose message is fit to show the Architect as-is."""

    exit_code = 1


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


class MessageNotUnderstood(AttributeError):
    """An object (and all its ancestors) has no slot or method by this name.

    It subclasses :class:`AttributeError` so that Python's own protocols
    (``hasattr``, ``getattr`` with a default, copy, pickle) keep working; the
    kernel catches it specifically and turns it into ``_doesNotUnderstand_``.
    """

    def __init__(self, receiver: object, selector: str) -> None:
        slots = receiver.__dict__.get("_slots")
        name = slots.get("name") if slots is not None else None
        label = name if isinstance(name, str) else type(receiver).__name__
        super().__init__(f"{label} does not understand {selector!r}")
        self.receiver = receiver
        self.selector = selector
