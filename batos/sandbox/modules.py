"""Which standard library modules stored methods may import, and what of them.

One source of truth for the guardian (which refuses other imports before a
method is installed) and for the sandbox worker (which hands a method a
*facade* of each module rather than the module itself). The facade is defence
in depth: the worker's real wall is the operating system (see
:mod:`batos.sandbox.lockdown`), but a method should not even be able to name
``os`` by walking ``uuid.os`` or ``json.codecs``.
"""

from __future__ import annotations

ALLOWED_MODULES = frozenset(
    {
        "math", "cmath", "datetime", "json", "re", "collections", "itertools", "functools", "operator",
        "statistics", "string", "random", "hashlib", "time", "decimal", "fractions", "textwrap",
        "bisect", "heapq", "calendar", "copy", "dataclasses", "enum", "numbers", "unicodedata",
        "difflib", "zlib", "base64", "binascii", "uuid", "typing", "array",
    }
)

# Modules that the C code of allowed modules imports on first use, through the
# ``__import__`` of the calling frame, which in a method is the sandbox's:
# ``datetime.strptime`` and ``time.strptime`` import ``_strptime`` and call one
# function of it. Refusing the import broke every date-parsing method (all 18
# candidates for the bench's days_between failed with "importing '_strptime'
# is not allowed"). Such an import gets only the names listed; the guardian
# still refuses a method's own ``import _strptime``.
IMPLICIT_IMPORTS: dict[str, frozenset[str]] = {
    "_strptime": frozenset({"_strptime_datetime", "_strptime_time"}),
}

# Modules a facade never leads to, even when an allowed module holds them as
# a plain attribute under another name (``enum.bltns``, ``datetime.sys``).
DANGEROUS_MODULES = frozenset(
    {"os", "sys", "builtins", "inspect", "codecs", "importlib", "subprocess", "socket", "ctypes", "io", "gc", "types", "posix"}
)

# Public names of allowed modules that evaluate strings as code, register
# callables behind the method's back, or hand out reflection: absent from the
# facades and refused by the guardian.
DENIED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "typing": frozenset({"get_type_hints", "NamedTuple", "ForwardRef", "TypedDict", "get_overloads", "overload"}),
    "functools": frozenset({"singledispatch", "singledispatchmethod"}),
    "dataclasses": frozenset({"make_dataclass"}),
    "operator": frozenset({"attrgetter", "methodcaller"}),
    "copy": frozenset({"_reconstruct"}),
    "string": frozenset({"Formatter", "Template"}),
    "enum": frozenset({"bltns"}),
}
