"""The image stays readable with ZODB's standard tools (fsdump, fsrefs, zodbconvert)."""

from __future__ import annotations

import subprocess

from batos.core.check import check_image
from batos.schema.genesis import incarnate
from batos.core.image import open_image
from batos.core.txn import reading, transact

from .conftest import BIN, file_uri


def test_fsdump_fsrefs_and_zodbconvert_read_the_image(tmp_path):
    uri = file_uri(tmp_path)
    with open_image(uri, create=True) as img:
        incarnate(img)
        transact(img.db, lambda root: root["genesis"].define_method("hi", "def hi(self):\n    return 'hi'\n"))
    source = tmp_path / "live_image.fs"

    dump = subprocess.run([str(BIN / "fsdump"), str(source)], capture_output=True, text=True, check=True)
    assert "description=b'genesis'" in dump.stdout
    assert "class=batos.core.uvm.UvmObject" in dump.stdout
    assert "class=batos.core.uvm.MethodRecord" in dump.stdout

    refs = subprocess.run([str(BIN / "fsrefs"), str(source)], capture_output=True, text=True)
    assert refs.returncode == 0 and refs.stdout.strip() == "", refs.stdout

    copy = tmp_path / "copy.fs"
    config = tmp_path / "convert.conf"
    config.write_text(
        f"<blobstorage source>\n  blob-dir {source}.blob\n  <filestorage>\n    path {source}\n    read-only true\n"
        f"  </filestorage>\n</blobstorage>\n"
        f"<blobstorage destination>\n  blob-dir {copy}.blob\n  <filestorage>\n    path {copy}\n  </filestorage>\n"
        f"</blobstorage>\n"
    )
    subprocess.run([str(BIN / "zodbconvert"), str(config)], capture_output=True, text=True, check=True)
    with open_image(str(copy)) as img:
        assert check_image(img).problems == []
        with reading(img.db) as root:
            assert root["genesis"].hi() == "hi"
            assert root["brick"].codex["title"] == "The Embodied Brick-Knight Engine"
