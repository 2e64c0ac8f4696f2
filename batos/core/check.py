"""Integrity check of an image, built on ZODB's own tools.

Two layers: for file storages, ZODB's ``fstest`` verifies the file's record
structure (lengths, transaction ids, status bytes); then, for any storage, a
walk from the root loads every reachable record, so dangling references,
unreadable pickles, classes that no longer import, and blobs whose files are
gone are all reported (what ``fsrefs`` does, but storage-independent).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from ZODB.POSException import POSKeyError
from ZODB.scripts import fstest
from ZODB.serialize import referencesf
from ZODB.utils import get_pickle_metadata, oid_repr, z64

from batos.core.image import Image


@dataclass
class CheckReport:
    objects: int = 0
    blobs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _class_importable(module: str, name: str) -> bool:
    try:
        return hasattr(importlib.import_module(module), name)
    except Exception:  # noqa: BLE001 - any import failure means "broken class"
        return False


def check_image(image: Image) -> CheckReport:
    report = CheckReport()
    if image.path is not None:
        try:
            fstest.check(str(image.path))
        except fstest.FormatError as exc:
            report.problems.append(f"fstest: {exc}")
    storage = image.db.storage
    importable: dict[tuple[str, str], bool] = {}
    seen = {z64}
    queue: list[tuple[bytes, bytes | None]] = [(z64, None)]
    while queue:
        oid, referrer = queue.pop()
        where = f"object {oid_repr(oid)}" + (f" (referenced by {oid_repr(referrer)})" if referrer else "")
        try:
            data, serial = storage.load(oid)
        except POSKeyError:
            report.problems.append(f"{where} is missing")
            continue
        except Exception as exc:  # noqa: BLE001 - CorruptedDataError and friends
            report.problems.append(f"{where} cannot be loaded: {type(exc).__name__}")
            continue
        report.objects += 1
        try:
            module, name = get_pickle_metadata(data)
            refs = referencesf(data)
        except Exception as exc:  # noqa: BLE001 - a corrupt pickle raises anything
            report.problems.append(f"{where} cannot be read: {type(exc).__name__}: {exc}")
            continue
        key = (module, name)
        if key not in importable:
            importable[key] = _class_importable(module, name)
        if not importable[key]:
            report.problems.append(f"{where} has class {module}.{name}, which cannot be imported")
        if key == ("ZODB.blob", "Blob"):
            report.blobs += 1
            try:
                storage.loadBlob(oid, serial)
            except (POSKeyError, OSError):
                report.problems.append(f"{where} is a blob whose file is missing")
        for ref in refs:
            if ref not in seen:
                seen.add(ref)
                queue.append((ref, oid))
    return report
