"""Assembling the embedded model from its part packages."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace

import pytest

from batos.substrate.embedded import EMBEDDED_DEFAULT, PartedModel, assemble
from batos.core.errors import ModelAssemblyError


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three importable part modules shaped like the real ones."""
    chunks = [b"GGUF" + b"a" * 1000, b"b" * 2048, b"c" * 10]
    root = tmp_path / "site"
    for i, chunk in enumerate(chunks, start=1):
        pkg = root / f"fakepart{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        (pkg / "__init__.py").write_text(
            "import os\n"
            "def get_part_path():\n"
            f"    return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'part{i:02d}.bin')\n"
        )
    monkeypatch.syspath_prepend(str(root))
    whole = b"".join(chunks)
    spec = PartedModel(
        name="fake",
        filename="fake.gguf",
        part_modules=("fakepart1", "fakepart2", "fakepart3"),
        part_packages=("fakepart1==1", "fakepart2==1", "fakepart3==1"),
        sha256=hashlib.sha256(whole).hexdigest(),
        size=len(whole),
    )
    yield spec, whole, root
    for name in spec.part_modules:
        sys.modules.pop(name, None)


def test_parts_are_joined_in_order_and_verified(fake_parts, tmp_path):
    spec, whole, _ = fake_parts
    seen = []
    path = assemble(spec, tmp_path / "models", progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == whole
    assert seen[-1] == (len(whole), len(whole))
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["fake.gguf", "fake.gguf.verified"]


def test_second_assembly_reuses_the_verified_file(fake_parts, tmp_path):
    spec, _, _ = fake_parts
    path = assemble(spec, tmp_path / "models")
    mtime = path.stat().st_mtime_ns
    calls = []
    assert assemble(spec, tmp_path / "models", progress=lambda *a: calls.append(a)) == path
    assert calls == []  # no re-hash, no re-copy
    assert path.stat().st_mtime_ns == mtime


def test_a_tampered_file_is_rebuilt(fake_parts, tmp_path):
    spec, whole, _ = fake_parts
    path = assemble(spec, tmp_path / "models")
    path.write_bytes(b"evil" + whole[4:])
    assert assemble(spec, tmp_path / "models").read_bytes() == whole


def test_checksum_mismatch_leaves_no_file(fake_parts, tmp_path):
    spec, _, _ = fake_parts
    wrong = replace(spec, sha256="0" * 64)
    with pytest.raises(ModelAssemblyError, match="does not match its pin"):
        assemble(wrong, tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


def test_corrupt_part_is_detected(fake_parts, tmp_path):
    spec, _, root = fake_parts
    (root / "fakepart2" / "data" / "part02.bin").write_bytes(b"b" * 2047 + b"X")
    with pytest.raises(ModelAssemblyError, match="does not match its pin"):
        assemble(spec, tmp_path / "models")


def test_missing_part_names_the_package(fake_parts, tmp_path):
    spec, _, _ = fake_parts
    missing = replace(spec, part_modules=spec.part_modules + ("no_such_part_module",), part_packages=spec.part_packages + ("nopart==9",))
    with pytest.raises(ModelAssemblyError, match="nopart==9 is not installed"):
        assemble(missing, tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_real_parts_match_the_pinned_checksum(tmp_path):
    """The 22 installed registry packages really give the pinned 1.1 GB GGUF."""
    path = assemble(EMBEDDED_DEFAULT, tmp_path)
    assert path.stat().st_size == EMBEDDED_DEFAULT.size
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
