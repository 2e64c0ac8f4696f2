"""Opening images by URI, and every way it can go wrong; the integrity check."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from ZODB.Connection import TransactionMetaData
from ZODB.utils import z64

from batos.core.check import check_image
from batos.core.errors import ImageError, InvalidName
from batos.core.image import normalize_uri, open_image, root_names, root_object
from batos.core.txn import reading, transact
from batos.core.uvm import UvmObject

from .conftest import file_uri


def test_bare_path_is_shorthand_for_file_uri_with_blobs():
    assert normalize_uri("/x/img.fs") == "file:///x/img.fs?blobstorage_dir=/x/img.fs.blob"
    assert normalize_uri("zeo://h:1") == "zeo://h:1"


def test_missing_image_is_an_error_and_is_not_created(tmp_path):
    uri = file_uri(tmp_path)
    with pytest.raises(ImageError, match="no image at .*batos image init"):
        open_image(uri)
    assert not (tmp_path / "live_image.fs").exists()


def test_unknown_scheme(tmp_path):
    with pytest.raises(ImageError, match="unknown image URI scheme 'bogus'"):
        open_image("bogus://x")


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="is a directory"):
        open_image(str(tmp_path))


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "is empty, not an image"),
        (b"not a zodb file at all", "not a readable ZODB file storage"),
        (b"FS21" + b"\xff" * 200, "not a readable ZODB file storage"),
    ],
)
@pytest.mark.parametrize("read_only", [False, True])
def test_corrupt_file_is_a_clear_error_and_is_left_alone(tmp_path, content, reason, read_only):
    path = tmp_path / "bad.fs"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        open_image(str(path), read_only=read_only)
    assert path.read_bytes() == content


def test_locked_image_names_the_holder(image_uri, tmp_path):
    open_image(image_uri, create=True).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from batos.core.image import open_image
                img = open_image({image_uri!r})
                print("ready", flush=True)
                sys.stdin.read()
                img.close()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(ImageError, match=rf"locked: another process has it open \(pid {holder.pid}\)"):
            open_image(image_uri)
        # Read-only opens take no lock: inspection works beside a running kernel.
        with open_image(image_uri, read_only=True) as img, reading(img.db) as root:
            assert "genesis" in root_names(root)
    finally:
        holder.communicate("", timeout=30)
    open_image(image_uri).close()  # released once the holder is gone


def test_no_zeo_server_is_a_clear_error():
    from .conftest import free_port

    with pytest.raises(ImageError, match="no ZEO server answering"):
        open_image(f"zeo://127.0.0.1:{free_port()}?wait_timeout=1")


def test_root_object_lookup_errors(image):
    with reading(image.db) as root:
        assert root_object(root, "genesis").name == "genesis"
        with pytest.raises(InvalidName, match="no root object named 'nobody'"):
            root_object(root, "nobody")
        for bad in ["_batos", "not-an-identifier", "", "1x"]:
            with pytest.raises(InvalidName, match="invalid root name"):
                root_object(root, bad)


def test_check_passes_on_a_fresh_image(image):
    report = check_image(image)
    assert report.problems == []
    assert report.objects > 11


def test_check_finds_a_dangling_reference(tmp_path):
    """Plant a root record that points at an object this storage never had."""
    donor = open_image(file_uri(tmp_path, "donor.fs"), create=True)
    transact(donor.db, lambda root: root.__setitem__("x", UvmObject(v=1)))
    root_pickle, _ = donor.db.storage.load(z64)
    donor.close()

    victim = open_image(file_uri(tmp_path, "victim.fs"), create=True)
    storage = victim.db.storage
    _, serial = storage.load(z64)
    txn = TransactionMetaData()
    storage.tpc_begin(txn)
    storage.store(z64, serial, root_pickle, "", txn)
    storage.tpc_vote(txn)
    storage.tpc_finish(txn)
    report = check_image(victim)
    victim.close()
    assert any("is missing" in p and "referenced by 0x00" in p for p in report.problems), report.problems


def test_check_finds_corrupted_bytes(image_uri, image):
    transact(image.db, lambda root: root["genesis"].__setattr__("payload", "A" * 5000))
    image.close()
    path = image.path
    data = bytearray(path.read_bytes())
    at = data.rindex(b"AAAA")
    data[at - 5000 : at - 4000] = b"\x00" * 1000  # smash the middle of the last transaction
    path.write_bytes(bytes(data))
    with open_image(image_uri, read_only=True) as img:
        report = check_image(img)
    assert not report.ok
