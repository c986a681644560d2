"""Exact and near-duplicate detection, one row at a time.

Both detectors are streaming: a row is compared with the rows *kept* before it and is then
kept or reported as a duplicate of the earliest match. Because only kept rows are indexed,
a cleaned file holds no pair that the detector would flag, so cleaning it again removes
nothing (idempotence), and the first occurrence of each cluster is the one that survives.

- Exact: a 128-bit BLAKE2 digest of the row's texts (metadata such as ids is ignored).
- Near: MinHash signatures of word n-gram shingles (Broder 1997), indexed with datasketch's
  MinHash LSH; a candidate that LSH returns counts only if the Jaccard similarity estimated
  from the two signatures reaches the threshold, which removes most LSH false positives.
  Shingles are hashed with CRC-32 (deterministic across runs and processes, and fast in C);
  datasketch mixes that with MurmurHash3's finalizer before its affine permutations.
  Memory per kept row is one signature (4 bytes x num_perm) plus the LSH bands, never the
  text, so corpora far larger than memory still fit.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Hashable, Optional

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from alignment.data.texts import words


class ExactDeduper:
    """Remembers the digest of every kept row; a repeated digest is an exact duplicate."""

    def __init__(self) -> None:
        self._first: dict[bytes, Hashable] = {}

    @staticmethod
    def digest(content: str) -> bytes:
        return hashlib.blake2b(content.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def check(self, key: Hashable, content: str, keep: bool = True) -> Optional[Hashable]:
        """The key of the earlier identical row, or None (and the row is remembered if `keep`)."""
        return self.check_digest(key, self.digest(content), keep)

    def check_digest(self, key: Hashable, digest: bytes, keep: bool = True) -> Optional[Hashable]:
        earlier = self._first.get(digest)
        if earlier is None and keep:
            self._first[digest] = key
        return earlier


def shingles(text: str, n: int) -> set[bytes]:
    """Word n-grams of the lower-cased text; a text shorter than n words is one shingle."""
    tokens = words(text)
    if len(tokens) <= n:
        return {" ".join(tokens).encode()} if tokens else set()
    return {" ".join(tokens[i : i + n]).encode() for i in range(len(tokens) - n + 1)}


class NearDeduper:
    """MinHash LSH over the kept rows; `check` returns the earliest kept row that is similar enough.

    `signature` (pure, per row) and `check_signature` (order-dependent, against the index)
    are separate so that signatures can be computed in worker processes while one process
    keeps the index.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 3, seed: int = 1):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold, self.num_perm, self.ngram, self.seed = threshold, num_perm, ngram, seed
        # one MinHash, reset per row: its permutations are drawn once, and copy() would re-validate them every time
        self._minhash = MinHash(num_perm=num_perm, seed=seed, hashfunc=zlib.crc32)
        self._empty = self._minhash.hashvalues.copy()
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._signatures: dict[Hashable, np.ndarray] = {}
        self._order: dict[Hashable, int] = {}

    def __getstate__(self) -> dict:
        # worker processes need only the signature side; the index stays with the parent
        return {"args": (self.threshold, self.num_perm, self.ngram, self.seed)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(*state["args"])

    def signature(self, text: str) -> Optional[np.ndarray]:
        """MinHash values of the text's shingles (None for a text without words)."""
        grams = shingles(text, self.ngram)
        if not grams:
            return None
        m = self._minhash
        m.hashvalues = self._empty  # update_batch builds a new array, so the reset value is never modified
        m.update_batch(grams)
        return m.hashvalues

    def check(self, key: Hashable, text: str, keep: bool = True) -> Optional[tuple[Hashable, float]]:
        """(earlier key, estimated Jaccard) of the best-matching kept row, or None."""
        return self.check_signature(key, self.signature(text), keep)

    def check_signature(self, key: Hashable, values: Optional[np.ndarray], keep: bool = True) -> Optional[tuple[Hashable, float]]:
        if values is None:
            return None
        m = LeanMinHash(seed=self.seed, hashvalues=values, scheme=self._minhash.scheme)
        best: Optional[tuple[Hashable, float]] = None
        for other in self._lsh.query(m):
            similarity = float(np.mean(self._signatures[other] == values))
            if similarity >= self.threshold and (
                best is None or (similarity, -self._order[other]) > (best[1], -self._order[best[0]])
            ):
                best = (other, similarity)
        if best is None and keep:
            self._order[key] = len(self._order)
            self._signatures[key] = values
            self._lsh.insert(key, m, check_duplication=False)
        return best
