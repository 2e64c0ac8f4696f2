"""The transformers backend on CPU (the tiny llama), LoRA adapters as blobs, swaps on a shared base, pins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from batos.substrate.llm import ModelError
from batos.substrate.modelhost import HostedModel, ModelPool
from batos.substrate.adapters import bind_adapter, import_adapter, list_adapters, revert_adapter, stage_adapters
from batos.substrate.models import ModelStoreError, bind_model, import_model, locate, remove_model
from batos.substrate.personas import HostedPersonas, current_pins
from batos.core.txn import reading

from .conftest import BIN, make_lora, tiny_gguf

PROMPT = ("You continue text.", "Once upon a time")


@pytest.fixture
def pool():
    pool = ModelPool()
    yield pool
    pool.close()


@pytest.fixture
def tiny(image, tiny_model_dir):
    import_model(image, tiny_model_dir, "tiny", ["BRICK"])
    return locate(image, "tiny")


def speak(model, **kw):
    return model.complete(*PROMPT, max_tokens=kw.pop("max_tokens", 12), temperature=0.0, **kw)


def test_a_gguf_imported_for_transformers_is_converted_and_stored_one_blob_per_file(image):
    summary = import_model(image, tiny_gguf(), "tiny", backend="transformers")
    assert summary["backend"] == "transformers"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(summary["sha256"])
    view = locate(image, "tiny").path
    assert all(os.path.realpath(p).endswith(".blob") for p in view.iterdir())  # links to the blobs, read in place
    assert json.loads((view / "config.json").read_text())["model_type"] == "llama"


def test_streamed_pieces_add_up_to_the_answer_and_max_tokens_and_stop_hold(tiny, pool):
    model = HostedModel(pool, "tiny", tiny.path, "transformers")
    pieces: list[str] = []
    text = speak(model, on_token=pieces.append)
    assert text and "".join(pieces) == text
    assert pool.status()["hosts"]["tiny"] == {"memory": pool._hosts["tiny"].size, "backend": "transformers",
                                             "device": "cpu", "quantization": None, "threads": os.cpu_count()}
    short = speak(model, max_tokens=2)
    assert len(short) < len(text) and text.startswith(short)
    stop = text.strip().split()[1]  # a word the greedy answer is known to contain
    cut = speak(model, stop=[stop])
    assert stop not in cut and text.startswith(cut)


def test_adapters_swap_on_one_base_process_without_reloading_it(image, tiny, tiny_adapter_dir, tmp_path, pool):
    import_adapter(image, tiny_adapter_dir, "brick-lora", "tiny", ["BRICK"])
    other = make_lora(tiny.path, tmp_path / "other", seed=7)
    import_adapter(image, other, "robin-lora", "tiny")
    personas = HostedPersonas(image.db, pool)
    with reading(image.db) as root:
        pins = current_pins(root)
    brick = personas.speaker("BRICK", pins)
    bare = HostedModel(pool, "tiny", tiny.path, "transformers", key=brick.key)
    base_answer = speak(bare)
    host = pool._hosts[brick.key]
    with_adapter = speak(brick)
    assert with_adapter != base_answer  # the adapter is really applied
    bind_adapter(image, "BRICK", "robin-lora")
    robin_adapted = speak(personas.speaker("BRICK"))
    assert robin_adapted not in (base_answer, with_adapter)
    assert speak(bare) == base_answer  # adapters switched off again: the bare base, unchanged
    assert speak(brick) == with_adapter  # the old pin still speaks through the adapter it pinned
    assert pool._hosts[brick.key] is host and host.process.poll() is None  # one base process throughout
    assert len(pool.swaps) == 1


def test_a_bare_safetensors_adapter_gets_its_config_from_its_tensors(image, tiny, tiny_adapter_dir, tmp_path):
    shutil.copy(tiny_adapter_dir / "adapter_model.safetensors", tmp_path / "loose.safetensors")
    summary = import_adapter(image, tmp_path / "loose.safetensors", "loose", "tiny")
    assert summary["files"] == ["adapter_config.json", "adapter_model.safetensors"]
    with reading(image.db) as root:
        config = json.loads(Path(root["models"].adapters["loose"].files["adapter_config.json"].blob.committed()).read_text())
    assert config["r"] == 4 and config["target_modules"] == ["q_proj", "v_proj"]


@pytest.mark.parametrize("make, error", [
    (lambda d: d.mkdir(), "needs an adapter_config.json"),
    (lambda d: (d.mkdir(), (d / "adapter_config.json").write_text("{oops")), "not JSON"),
    (lambda d: (d.mkdir(), (d / "adapter_config.json").write_text('{"peft_type": "LORA"}')), "no adapter_model"),
    (lambda d: (d.mkdir(), (d / "adapter_config.json").write_text('{"peft_type": "IA3"}')), "only LoRA"),
    (lambda d: d.with_suffix(".safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}"), "not a readable safetensors"),
])
def test_a_broken_adapter_is_refused_and_stores_nothing(image, tiny, tmp_path, make, error):
    target = tmp_path / "bad"
    make(target)
    path = target if target.exists() else target.with_suffix(".safetensors")
    tid = image.db.lastTransaction()
    with pytest.raises(ModelStoreError, match=error):
        import_adapter(image, path, "bad", "tiny")
    assert image.db.lastTransaction() == tid
    assert list_adapters(image) == []


def test_adapter_bindings_need_the_right_base_and_revert_restores(image, tiny, tiny_adapter_dir, tmp_path):
    with pytest.raises(ModelStoreError, match="no model named 'nope'"):
        import_adapter(image, tiny_adapter_dir, "a1", "nope")
    with pytest.raises(ModelStoreError, match="llama.cpp model; LoRA adapters need a transformers base"):
        gguf = tmp_path / "x.gguf"
        gguf.write_bytes(b"GGUF" + b"\0" * 64)
        import_model(image, gguf, "gg")
        import_adapter(image, tiny_adapter_dir, "a1", "gg")
    import_adapter(image, tiny_adapter_dir, "a1", "tiny", ["BRICK"])
    import_adapter(image, tiny_adapter_dir, "a2", "tiny")
    with pytest.raises(ModelStoreError, match="'a1' adapts 'tiny', but ROBIN uses 'embedded-default'"):
        bind_adapter(image, "ROBIN", "a1")
    bind_adapter(image, "BRICK", "a2")
    assert revert_adapter(image, "BRICK") == "a1"
    assert revert_adapter(image, "BRICK") is None  # before a1: the bare base
    with pytest.raises(ModelStoreError, match="no earlier adapter"):
        revert_adapter(image, "BRICK")
    bind_adapter(image, "BRICK", "a1")
    bind_model(image, "gg", ["BRICK"])  # leaving tiny drops BRICK's adapter of it
    with reading(image.db) as root:
        assert root["brick"].adapter is None and root["brick"].adapter_history[-1]["reason"] == "model changed to gg"
    with pytest.raises(ModelStoreError, match="base of adapter"):
        remove_model(image, "tiny")


def test_a_model_reimported_under_its_name_breaks_the_old_pin_with_a_clear_error(image, tiny, tiny_model_dir, tmp_path, pool):
    personas = HostedPersonas(image.db, pool)
    with reading(image.db) as root:
        pins = current_pins(root)
    changed = tmp_path / "changed"
    shutil.copytree(tiny_model_dir, changed)
    (changed / "generation_config.json").write_text('{"max_length": 64}')
    import_model(image, changed, "elsewhere", ["BRICK"])  # free "tiny" so it can be replaced
    remove_model(image, "tiny")
    import_model(image, changed, "tiny", ["BRICK"])
    with pytest.raises(ModelError, match="BRICK's pinned model is not available: model 'tiny' is now version"):
        personas.speaker("BRICK", pins)
    assert speak(personas.speaker("BRICK"))  # the current binding serves


def test_a_corrupt_model_directory_fails_to_load_without_hanging(image, tmp_path, pool):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')
    (broken / "model.safetensors").write_bytes(b"not weights")
    import_model(image, broken, "broken")
    with pytest.raises(ModelError, match="cannot load broken"):
        speak(HostedModel(pool, "broken", locate(image, "broken").path, "transformers"))
    assert pool.loaded() == []


def test_staged_adapters_are_imported_once_each_and_bad_ones_skipped_with_a_reason(image, tiny, tiny_adapter_dir, tmp_path):
    staging = tmp_path / "lora_adapters"
    shutil.copytree(tiny_adapter_dir, staging / "babs-style")
    (staging / "babs-style" / "batos.json").write_text('{"base": "tiny", "personas": []}')
    shutil.copy(tiny_adapter_dir / "adapter_model.safetensors", staging / "loose.safetensors")
    (staging / "broken").mkdir()
    (staging / "broken" / "adapter_config.json").write_text("{oops")
    imported, skipped = stage_adapters(image, staging, base=None)
    assert imported == ["babs-style"]  # the manifest names its base; the others are skipped with reasons
    assert [s.split("lora_adapters/")[1] for s in skipped] == [
        'broken: no base model named (give --base, or a batos.json with "base")',
        'loose.safetensors: no base model named (give --base, or a batos.json with "base")']
    imported, skipped = stage_adapters(image, staging, base="tiny")
    assert imported == ["loose"] and len(skipped) == 1 and "adapter_config.json: not JSON" in skipped[0]
    assert stage_adapters(image, staging, base="tiny") == ([], skipped)  # imported ones are not imported twice


def test_adapters_cli_imports_lists_binds_and_reverts(image_uri, tiny_model_dir, tiny_adapter_dir):
    def batos(*args):
        return subprocess.run([str(BIN / "batos"), *args], capture_output=True, text=True, timeout=120)

    assert batos("models", "import", tiny_model_dir.as_posix(), "--name", "tiny", "--persona", "brick", "--image", image_uri).returncode == 0
    done = batos("adapters", "import", str(tiny_adapter_dir), "--name", "b1", "--base", "tiny", "--persona", "BRICK", "--image", image_uri)
    assert done.returncode == 0, done.stderr
    assert "bound to BRICK" in done.stdout
    listed = json.loads(batos("adapters", "list", "--json", "--image", image_uri).stdout)
    assert [a["name"] for a in listed["adapters"]] == ["b1"]
    assert listed["history"]["BRICK"][-1]["replaced_by"] == "b1"
    wrong = batos("adapters", "bind", "ROBIN", "b1", "--image", image_uri)
    assert wrong.returncode == 1 and "adapts 'tiny', but ROBIN uses" in wrong.stderr and "Traceback" not in wrong.stderr
    reverted = batos("adapters", "revert", "brick", "--image", image_uri)
    assert reverted.returncode == 0 and "no adapter (the bare base)" in reverted.stdout


def test_an_adapter_reimported_under_its_name_breaks_the_old_pin(image, tiny, tiny_adapter_dir, tmp_path, pool):
    from batos.substrate.adapters import remove_adapter

    import_adapter(image, tiny_adapter_dir, "a1", "tiny", ["BRICK"])
    personas = HostedPersonas(image.db, pool)
    with reading(image.db) as root:
        pins = current_pins(root)
    bind_adapter(image, "BRICK", None)
    remove_adapter(image, "a1")
    import_adapter(image, make_lora(tiny.path, tmp_path / "other", seed=3), "a1", "tiny", ["BRICK"])
    with pytest.raises(ModelError, match="BRICK's pinned model is not available: adapter 'a1' is now version"):
        personas.speaker("BRICK", pins)


def test_no_token_containing_an_avoided_string_is_sampled(tiny, pool):
    model = HostedModel(pool, "tiny", tiny.path, "transformers")
    free = speak(model, max_tokens=24)
    letter = next(c for c in free if c.isalpha())  # one the greedy answer is known to use
    banned = speak(model, max_tokens=24, avoid=[letter])
    assert letter in free and letter not in banned and banned
