"""Models stored in the image: one blob per file, a registry, persona bindings."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from batos.substrate.models import EMBEDDED_NAME, ModelStoreError, ensure_embedded, import_model, list_models, locate, remove_model
from batos.core.txn import reading

from .conftest import BIN


def fake_gguf(path, size=3 << 20):
    data = b"GGUF" + os.urandom(size - 4)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_a_gguf_becomes_a_blob_opened_in_place(image, tmp_path):
    sha = fake_gguf(tmp_path / "tiny.gguf")
    seen = []
    summary = import_model(image, tmp_path / "tiny.gguf", "tiny", ["brick"], progress=seen.append)
    assert summary == {**summary, "name": "tiny", "backend": "llama.cpp", "files": 1, "size": 3 << 20, "personas": ["BRICK"]}
    assert summary["sha256"] == {"tiny.gguf": sha}
    assert sum(seen) == 3 << 20
    assert (tmp_path / "tiny.gguf").exists()  # the Architect's file is left alone
    location = locate(image, "tiny")
    assert location.backend == "llama.cpp"
    assert str(location.path).startswith(str(tmp_path / "live_image.fs.blob"))  # the committed blob itself
    assert hashlib.sha256(location.path.read_bytes()).hexdigest() == sha
    assert os.listdir(image.db.storage.temporaryDirectory()) == []  # nothing staged is left behind
    with reading(image.db) as root:
        assert root["brick"].model == "tiny"
        assert root["robin"].model == EMBEDDED_NAME  # inherited from pLLM, untouched


def test_a_model_directory_keeps_one_blob_per_file(image, tmp_path):
    model = tmp_path / "hf"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "model.safetensors").write_bytes(os.urandom(1 << 20))
    (model / "sub" / "tokenizer.json").write_text("{}")
    summary = import_model(image, model, "hf-tiny")
    assert summary["backend"] == "transformers" and summary["files"] == 3
    assert set(summary["sha256"]) == {"config.json", "model.safetensors", "sub/tokenizer.json"}
    view = locate(image, "hf-tiny").path  # a directory of links to the committed blobs, read in place
    assert (view / "config.json").read_text() == '{"model_type": "llama"}'
    assert (view / "sub" / "tokenizer.json").is_symlink()
    assert os.path.realpath(view / "model.safetensors").endswith(".blob")


@pytest.mark.parametrize(
    "setup, name, personas, message",
    [
        (lambda d: (d / "m.bin").write_bytes(b"x"), "m", [], "must be a .gguf"),
        (lambda d: (d / "m.gguf").write_bytes(b"NOPE" * 10), "m", [], "bad magic"),
        (lambda d: (d / "m.gguf").mkdir(), "m", [], "needs a config.json"),
        (lambda d: fake_gguf(d / "m.gguf", 1024), "bad name!", [], "invalid model name"),
        (lambda d: fake_gguf(d / "m.gguf", 1024), "m", ["JOKER"], "unknown persona"),
    ],
)
def test_bad_imports_are_refused_and_change_nothing(image, tmp_path, setup, name, personas, message):
    setup(tmp_path)
    tid = image.db.lastTransaction()
    with pytest.raises(ModelStoreError, match=message):
        import_model(image, tmp_path / ("m.gguf" if (tmp_path / "m.gguf").exists() else "m.bin"), name, personas)
    assert image.db.lastTransaction() == tid
    assert os.listdir(image.db.storage.temporaryDirectory()) == []


def test_duplicate_names_and_bound_models_are_refused(image, tmp_path):
    fake_gguf(tmp_path / "a.gguf", 1024)
    import_model(image, tmp_path / "a.gguf", "a", ["babs"])
    with pytest.raises(ModelStoreError, match="exists"):
        import_model(image, tmp_path / "a.gguf", "a")
    assert os.listdir(image.db.storage.temporaryDirectory()) == []
    with pytest.raises(ModelStoreError, match="bound to BABS"):
        remove_model(image, "a")
    import_model(image, tmp_path / "a.gguf", "b")
    remove_model(image, "b")
    assert [m["name"] for m in list_models(image)] == ["a"]
    with pytest.raises(ModelStoreError, match="no model named"):
        remove_model(image, "b")


def test_the_embedded_default_is_imported_once(image, tmp_path):
    fake_gguf(tmp_path / "embedded.gguf", 2048)
    first = ensure_embedded(image, tmp_path / "embedded.gguf")
    tid = image.db.lastTransaction()
    assert ensure_embedded(image, tmp_path / "embedded.gguf") == first
    assert image.db.lastTransaction() == tid
    assert list_models(image)[0]["personas"] == ["ALFRED", "BRICK", "ROBIN", "BABS"]


def test_models_commands(image_uri, tmp_path):
    fake_gguf(tmp_path / "cli.gguf", 4096)
    run = lambda *a: subprocess.run([str(BIN / "batos"), "models", *a, "--image", image_uri], capture_output=True, text=True, timeout=120)  # noqa: E731
    imported = run("import", str(tmp_path / "cli.gguf"), "--name", "cli", "--persona", "robin")
    assert imported.returncode == 0 and "imported cli (llama.cpp, 1 file(s)" in imported.stdout and "bound to ROBIN" in imported.stdout
    assert run("list").stdout.split()[:2] == ["cli", "llama.cpp"]
    refused = run("remove", "cli")
    assert refused.returncode == 1 and "bound to ROBIN" in refused.stderr and "Traceback" not in refused.stderr
