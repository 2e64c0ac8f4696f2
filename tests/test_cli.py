"""The ``batos`` command line, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batos.schema.migrations import SCHEMA_VERSION

from .conftest import BIN, file_uri, zeo_uri

BATOS = str(BIN / "batos")


def batos(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([BATOS, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def assert_clean_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("batos: error: ")
    assert pattern in lines[0], lines[0]


def test_init_is_idempotent_and_info_describes_the_image(tmp_path):
    uri = file_uri(tmp_path)
    first = batos("image", "init", "--image", uri)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("created 11 primordial objects")
    size = (tmp_path / "live_image.fs").stat().st_size
    second = batos("image", "init", "--image", uri)
    assert second.returncode == 0
    assert "nothing changed" in second.stdout
    assert (tmp_path / "live_image.fs").stat().st_size == size

    info = batos("image", "info", "--image", uri, "--json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["schema_version"] == SCHEMA_VERSION == 3
    assert data["storage"].startswith("BlobStorage")
    assert data["objects"] > 11
    assert data["size_bytes"] >= size
    assert set(data["roots"]) >= {"traits", "pLLM", "genesis", "alfred", "brick", "robin", "babs"}
    text = batos("image", "info", "--image", uri).stdout
    assert f"schema:   v{SCHEMA_VERSION}" in text and "genesis" in text


def test_default_image_is_in_the_working_directory(tmp_path):
    assert batos("image", "init", cwd=tmp_path).returncode == 0
    assert (tmp_path / "live_image.fs").is_file()
    assert (tmp_path / "live_image.fs.blob").is_dir()
    assert batos("image", "check", cwd=tmp_path).returncode == 0


def test_check_and_show(tmp_path):
    uri = file_uri(tmp_path)
    batos("image", "init", "--image", uri)
    check = batos("image", "check", "--image", uri)
    assert check.returncode == 0
    assert check.stdout.startswith("OK: ")
    show = batos("image", "show", "traits", "--image", uri)
    assert show.returncode == 0
    assert "method about" in show.stdout and "v1 by architect" in show.stdout


def test_check_fails_on_a_damaged_image(tmp_path):
    uri = file_uri(tmp_path)
    batos("image", "init", "--image", uri)
    path = tmp_path / "live_image.fs"
    data = bytearray(path.read_bytes())
    at = data.index(b"batos.core.uvm", len(data) // 2)  # inside a record's pickle, not inside a bytes value
    data[at : at + 64] = b"\xee" * 64
    path.write_bytes(bytes(data))
    check = batos("image", "check", "--image", uri)
    assert check.returncode == 1
    assert "PROBLEM: " in check.stdout
    assert "Traceback" not in check.stdout + check.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["image", "info", "--image", "{tmp}/absent.fs"], "no image at"),
        (["image", "check", "--image", "bogus://x"], "unknown image URI scheme 'bogus'"),
        (["image", "info", "--image", "{tmp}/junk.fs"], "not a readable ZODB file storage"),
        (["image", "show", "not-a-name", "--image", "{tmp}/img.fs"], "invalid root name"),
        (["image", "show", "nobody", "--image", "{tmp}/img.fs"], "no root object named 'nobody'"),
        (["image", "init", "--image", "{tmp}"], "is a directory"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, args, message):
    (tmp_path / "junk.fs").write_bytes(b"junk" * 100)
    assert batos("image", "init", "--image", str(tmp_path / "img.fs")).returncode == 0
    assert_clean_error(batos(*[a.format(tmp=tmp_path) for a in args]), message)


def test_locked_image_gives_a_clear_error(tmp_path):
    uri = file_uri(tmp_path)
    batos("image", "init", "--image", uri)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from batos.core.image import open_image
            img = open_image({uri!r})
            print("ready", flush=True)
            sys.stdin.read()
            """)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert_clean_error(batos("image", "init", "--image", uri), f"locked: another process has it open (pid {holder.pid})")
        # Inspection still works: it opens read-only and takes no lock.
        assert batos("image", "info", "--image", uri).returncode == 0
    finally:
        holder.communicate("", timeout=30)


def test_image_commands_over_zeo(zeo_server, tmp_path):
    uri = zeo_uri(zeo_server, tmp_path, "cli")
    init = batos("image", "init", "--image", uri)
    assert init.returncode == 0, init.stderr
    info = json.loads(batos("image", "info", "--image", uri, "--json").stdout)
    assert info["storage"].startswith("ClientStorage")
    assert info["schema_version"] == SCHEMA_VERSION
    assert batos("image", "check", "--image", uri).returncode == 0
