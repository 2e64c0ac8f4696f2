"""The living image: a ZODB database named by a ``zodburi`` URI.

``file://PATH?blobstorage_dir=DIR`` is a local FileStorage with blobs;
``zeo://HOST:PORT`` is a ZEO server shared by several processes. Opening
translates every way this can go wrong (missing, corrupt, locked, unknown
scheme, no server) into an :class:`ImageError` with a one-line message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import zc.lockfile
import zodburi
from persistent.mapping import PersistentMapping
from ZODB.broken import find_global
from ZODB.DB import DB
from ZODB.FileStorage.FileStorage import FileStorageFormatError
from ZODB.POSException import POSError

from batos.core.errors import ImageError, InvalidName
from batos.core.uvm import UvmObject

DEFAULT_URI = "file://./live_image.fs?blobstorage_dir=./live_image.fs.blob"
URI_ENV = "BATOS_IMAGE"
META_KEY = "_batos"  # root key of the image's own metadata (schema version...)
ZEO_WAIT_TIMEOUT = 10  # seconds; ZEO's own default waits 30 s for a dead server

# Stored classes that a release moved, by their old (module, name). An image
# written before the move names the old place in its pickles until
# ``batos image migrate`` rewrites every record that does (schema v3).
MOVED_CLASSES: dict[tuple[str, str], str] = {
    ("batos.uvm", "UvmObject"): "batos.core.uvm",
    ("batos.uvm", "MethodRecord"): "batos.core.uvm",
    ("batos.memory", "Chunk"): "batos.memory.catalog",
    ("batos.memory", "Document"): "batos.memory.catalog",
    ("batos.memory", "Stemmer"): "batos.memory.text",
    ("batos.models", "ModelFile"): "batos.substrate.models",
    ("batos.models", "ModelRecord"): "batos.substrate.models",
    ("batos.models", "AdapterRecord"): "batos.substrate.models",
}


def find_class(connection: Any, module: str, name: str) -> type:
    """ZODB's class factory, following :data:`MOVED_CLASSES`."""
    return find_global(MOVED_CLASSES.get((module, name), module), name)


def default_uri() -> str:
    return os.environ.get(URI_ENV) or DEFAULT_URI


def normalize_uri(uri: str) -> str:
    """Accept a bare path as shorthand for a file storage with blobs beside it."""
    if "://" in uri:
        return uri
    return f"file://{uri}?blobstorage_dir={uri}.blob"


def file_path(uri: str) -> Path | None:
    """The data file of a ``file://`` URI, or None for other schemes."""
    if not uri.startswith("file://"):
        return None
    return Path(os.path.normpath(uri[len("file://") :].split("?", 1)[0]))


def _with_zeo_timeout(uri: str) -> str:
    if uri.startswith("zeo://") and "wait_timeout=" not in uri:
        return f"{uri}{'&' if '?' in uri else '?'}wait_timeout={ZEO_WAIT_TIMEOUT}"
    return uri


def _lock_holder(path: Path) -> str:
    try:
        pid = Path(f"{path}.lock").read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid else ""


@dataclass
class Image:
    """An open living image. Close it, or use it as a context manager."""

    uri: str
    db: DB
    read_only: bool

    @property
    def path(self) -> Path | None:
        return file_path(self.uri)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Image":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_image(uri: str | None = None, *, create: bool = False, read_only: bool = False) -> Image:
    """Open the image at *uri* (default: ``$BATOS_IMAGE`` or ``./live_image.fs``).

    Without *create*, a file storage that does not exist is an error rather
    than silently becoming a new empty image. *read_only* file storages take
    no lock, so ``info`` and ``check`` work beside a running kernel.
    """
    uri = normalize_uri(uri or default_uri())
    path = file_path(uri)
    if path is not None:
        if path.is_dir():
            raise ImageError(f"{path} is a directory, not an image file")
        if not create and not path.exists():
            raise ImageError(f"no image at {path}; create one with `batos image init --image {uri}`")
        if not create and path.stat().st_size == 0:
            raise ImageError(f"{path} is empty, not an image; remove it or run `batos image init`")
        if create and read_only:
            raise ValueError("an image cannot be created read-only")
    resolved = _with_zeo_timeout(uri)
    if read_only and "read_only=" not in resolved:
        resolved = f"{resolved}{'&' if '?' in resolved else '?'}read_only=1"
    try:
        factory, db_kwargs = zodburi.resolve_uri(resolved)
    except zodburi.NoResolverForScheme:
        scheme = uri.split("://", 1)[0]
        raise ImageError(f"unknown image URI scheme {scheme!r}; use file://PATH or zeo://HOST:PORT") from None
    except (ValueError, KeyError) as exc:
        raise ImageError(f"bad image URI {uri!r}: {exc}") from None
    storage = _call_storage(factory, uri, path)
    _sync_at_begin(storage)
    try:
        db = DB(storage, class_factory=find_class, **db_kwargs)
    except (POSError, OSError, ValueError, EOFError) as exc:
        storage.close()
        raise ImageError(f"image {uri} cannot be read: {type(exc).__name__}: {exc}") from None
    return Image(uri, db, read_only)


def _sync_at_begin(storage: Any) -> None:
    """Make every transaction on a ZEO client begin after all earlier commits.

    ZEO sends invalidations asynchronously, so without this a transaction
    begun just after another process's commit returned can still read the old
    state (CI saw a root key another client had just committed as missing).
    The Architect teaches an object through one process and uses it through
    another, so each transaction pays one round trip to the server instead.
    zodburi cannot pass ``server_sync``; this is what ClientStorage does with
    it, and it runs again on every reconnection, as the flag is kept.
    """
    from ZEO.ClientStorage import ClientStorage

    if isinstance(storage, ClientStorage):
        storage.server_sync = True
        storage.sync = lambda: storage.ping()  # late-bound: a reconnection replaces ping


def _call_storage(factory: Callable[[], Any], uri: str, path: Path | None) -> Any:
    try:
        return factory()
    except zc.lockfile.LockError:
        raise ImageError(f"image {path} is locked: another process has it open{_lock_holder(path)}") from None
    except FileStorageFormatError:
        raise ImageError(f"{path} is not a readable ZODB file storage (bad header or record structure)") from None
    except PermissionError as exc:
        raise ImageError(f"image {uri}: permission denied ({exc.filename})") from None
    except Exception as exc:  # noqa: BLE001 - storages raise many unrelated types
        from ZEO.Exceptions import ClientDisconnected

        if isinstance(exc, ClientDisconnected):
            raise ImageError(f"no ZEO server answering at {uri.split('?', 1)[0]}") from None
        if path is not None:
            raise ImageError(f"{path} is not a valid image file: {type(exc).__name__}: {exc}") from None
        raise ImageError(f"image {uri} cannot be opened: {type(exc).__name__}: {exc}") from None


def is_root_name(name: object) -> bool:
    return isinstance(name, str) and name.isidentifier() and not name.startswith("_")


def root_object(root: Any, name: str) -> UvmObject:
    """The named root object, or an InvalidName error that says what exists."""
    if not is_root_name(name):
        raise InvalidName(f"invalid root name {name!r}: root names are identifiers not starting with '_'")
    obj = root.get(name)
    if not isinstance(obj, UvmObject):
        known = ", ".join(root_names(root)) or "none; run `batos image init`"
        raise InvalidName(f"no root object named {name!r} (known: {known})")
    return obj


def root_names(root: Any) -> list[str]:
    return sorted(k for k, v in root.items() if is_root_name(k) and isinstance(v, UvmObject))


def metadata(root: Any) -> PersistentMapping | None:
    meta = root.get(META_KEY)
    return meta if isinstance(meta, PersistentMapping) else None


def storage_size(image: Image) -> int:
    """Bytes on disk: the data file plus its blobs (ZODB's own figure for ZEO)."""
    storage = image.db.storage
    size = storage.getSize()
    blob_dir = getattr(storage, "fshelper", None)
    if blob_dir is not None and image.path is not None:
        for dirpath, _dirs, files in os.walk(blob_dir.base_dir):
            size += sum((Path(dirpath) / f).stat().st_size for f in files)
    return size
