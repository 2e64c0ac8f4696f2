"""Model hosts: one process per loaded model, an LRU memory budget, failed loads that harm nothing."""

from __future__ import annotations

import os

import pytest

from batos.substrate.embedded import assemble
from batos.substrate.llm import ModelError
from batos.substrate.modelhost import HostedModel, ModelPool


@pytest.fixture(scope="module")
def gguf():
    return assemble()


def ask(pool, name, path):
    return HostedModel(pool, name, path).complete("You answer with one word.", "Say yes.", max_tokens=3, temperature=0.0)


def test_least_recently_used_model_is_unloaded_by_ending_its_process(gguf, tmp_path):
    size = gguf.stat().st_size
    pool = ModelPool(budget=int(size * 1.5))  # room for one model only
    try:
        assert ask(pool, "a", gguf)
        first = pool._hosts["a"].process
        assert ask(pool, "b", gguf)  # b needs a's room
        assert first.poll() is not None  # a's process is gone, and its memory with it
        assert pool.loaded() == ["b"]
        assert pool.used == pool._hosts["b"].size >= size  # measured resident memory, at least the file
        assert pool.status()["hosts"]["b"]["device"] == "cpu"
        assert pool.status()["hosts"]["b"]["threads"] == os.cpu_count()  # not llama-cpp-python's default of half
        status = pool.status()
        assert [s["loaded"] for s in status["recent_swaps"]] == ["a", "b"]
        assert status["recent_swaps"][1]["evicted"] == ["a"]
        assert ask(pool, "b", gguf)  # already loaded: no swap
        assert len(pool.swaps) == 2
    finally:
        pool.close()


def test_a_failed_load_leaves_the_loaded_model_serving(gguf, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 4096)
    pool = ModelPool(budget=gguf.stat().st_size * 3)
    try:
        assert ask(pool, "good", gguf)
        with pytest.raises(ModelError, match="cannot load broken"):
            ask(pool, "broken", broken)
        assert pool.loaded() == ["good"]
        assert ask(pool, "good", gguf)
        with pytest.raises(ModelError, match="model file missing"):
            ask(pool, "gone", tmp_path / "gone.gguf")
    finally:
        pool.close()


def test_the_thread_count_is_what_the_host_computes_on(gguf):
    pool = ModelPool(budget=gguf.stat().st_size * 3, threads=1)
    try:
        assert ask(pool, "one", gguf)
        assert pool.status()["hosts"]["one"]["threads"] == 1
    finally:
        pool.close()


def test_a_model_larger_than_the_budget_is_refused(gguf):
    pool = ModelPool(budget=1 << 20)
    with pytest.raises(ModelError, match="more than the whole budget"):
        ask(pool, "big", gguf)
    assert pool.loaded() == []


def test_no_token_containing_an_avoided_string_is_sampled():
    """What CODE_AVOID relies on: the llama.cpp host bans every token that contains the text."""
    from .conftest import tiny_gguf

    pool = ModelPool()
    try:
        model = HostedModel(pool, "tiny", tiny_gguf())
        free = model.complete("You write code.", "def add(a, b):", max_tokens=24, temperature=0.0)
        letter = next(c for c in free if c.isalpha())  # one the greedy answer is known to use
        banned = model.complete("You write code.", "def add(a, b):", max_tokens=24, temperature=0.0, avoid=[letter])
        assert letter in free and letter not in banned and banned
    finally:
        pool.close()


def test_the_prompt_cache_keeps_one_row_of_scores_and_restores_exactly_regression_14_gb_host():
    """Regression: each entry of llama-cpp-python's RAM cache kept the whole score matrix
    (311 MB for Qwen) uncounted, and a kernel's host reached 14 GB with a "512 MiB" cache."""
    from llama_cpp import Llama

    from batos.substrate.hostchild import prompt_cache

    from .conftest import tiny_gguf

    llm = Llama(model_path=str(tiny_gguf()), n_ctx=256, n_threads=1, verbose=False)
    prompts = ["def add(a, b):", "def add(a, b):\n    return", "class Stack:"]

    def answers() -> list[str]:
        return [llm.create_completion(p, max_tokens=8, temperature=0.0)["choices"][0]["text"] for p in prompts]

    uncached = answers()
    cache = prompt_cache(1 << 30)
    llm.set_cache(cache)
    assert answers() == uncached  # filling the cache
    assert answers() == uncached  # every prompt now restored from it
    assert len(cache.cache_state) == 3
    assert [s.scores.shape for s in cache.cache_state.values()] == [(1, llm.n_vocab())] * 3
    one = max(s.llama_state_size + s.scores.nbytes + s.input_ids.nbytes for s in cache.cache_state.values())
    small = prompt_cache(one + one // 2)  # room for one entry, counted whole
    llm.set_cache(small)
    assert answers() == uncached and len(small.cache_state) == 1
