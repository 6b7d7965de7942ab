"""The near-duplicate index both stores keep: Manku et al.'s block tables, with a cap.

Two 64-bit simhashes within Hamming distance 3 agree exactly on at least one of their four
16-bit blocks (pigeonhole: 3 differing bits touch at most 3 blocks). So a fingerprint is filed
under four buckets, "block I has value X", and a lookup compares only the fingerprints of its
own four buckets, at most `BUCKET_CAP` of each: a lookup costs four bucket reads and at most
4 x `BUCKET_CAP` comparisons, however many pages the job holds. Random fingerprints reach the
cap only past about 4 million distinct ones per job; past that, a near duplicate is missed
only when every block it shares lies in a full bucket. Identical fingerprints are filed once
(the first page that had one is the answer), so a site of many identical pages fills nothing.

Where the buckets live differs with the store. Redis holds them itself (strings of packed
fingerprints, see lua/common.lua), shared by all workers. The SQLite frontier, one process per
job, holds them in memory as four sorted numpy tables (`BlockIndex`, Manku's "permuted tables"
with one block as the sort key), rebuilt at open from an append-only table of fingerprints:
a page costs one sequential row, not four random B-tree writes, and a lookup is eight binary
searches, flat in the size of the job.

Above distance 3 the blocks no longer guarantee a shared bucket: the same buckets are searched,
and pairs that share no block are not found.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

BLOCKS = 4
BLOCK_BITS = 16
BUCKET_CAP = 64  # fingerprints compared per bucket; crawler/frontier/lua/common.lua has the same
MERGE_EVERY = 4096  # new fingerprints kept unsorted before they join the sorted tables
_MASK = (1 << BLOCK_BITS) - 1
_SHIFTS = np.array([BLOCK_BITS * i for i in range(BLOCKS)], dtype=np.uint64)


def buckets(value: int) -> list[int]:
    """The four bucket numbers of a fingerprint: block index in the high bits, block below."""
    return [(i << BLOCK_BITS) | ((value >> (BLOCK_BITS * i)) & _MASK) for i in range(BLOCKS)]


def signed(value: int) -> int:
    """A 64-bit fingerprint as SQLite's signed INTEGER."""
    return value - (1 << 64) if value >= 1 << 63 else value


class BlockIndex:
    """Fingerprints numbered 0, 1, 2... in filing order, searchable by block.

    `hashes[n]` is fingerprint n. For each block i, `order[i]` lists the fingerprint numbers
    sorted by that block (filing order within a bucket), and `starts[i][x]` is where bucket
    "block i is x" begins in it: a bucket is found by indexing, not searching. The last
    fingerprints filed wait in a buffer, compared directly, until `MERGE_EVERY` of them are
    merged into the tables (a copy, O(N), once per `MERGE_EVERY` pages).
    """

    def __init__(self, values: Iterable[int] = ()) -> None:
        self.hashes: npt.NDArray[np.uint64] = np.fromiter(values, dtype=np.uint64)
        blocks = self._blocks(self.hashes)
        self.order: list[npt.NDArray[np.uint32]] = [
            np.argsort(blocks[:, i], kind="stable").astype(np.uint32) for i in range(BLOCKS)]
        self.starts: list[npt.NDArray[np.int64]] = [self._starts(blocks[:, i])
                                                     for i in range(BLOCKS)]
        self._recent = np.empty(MERGE_EVERY, dtype=np.uint64)
        self._waiting = 0

    def __len__(self) -> int:
        return len(self.hashes) + self._waiting

    @staticmethod
    def _blocks(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint16]:
        return ((values[:, None] >> _SHIFTS) & np.uint64(_MASK)).astype(np.uint16)

    @staticmethod
    def _starts(keys: npt.NDArray[np.uint16]) -> npt.NDArray[np.int64]:
        """starts[x]: how many keys are below x, for x in 0..65536."""
        counts = np.bincount(keys, minlength=1 << BLOCK_BITS).astype(np.int64)
        return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(counts)])

    def near(self, value: int, distance: int) -> list[int]:
        """Numbers of the filed fingerprints within `distance` of `value`, earliest first,
        from the value's four buckets (the first `BUCKET_CAP` of each)."""
        found: set[int] = set()
        v = np.uint64(value)
        for i in range(BLOCKS):
            block = (value >> (BLOCK_BITS * i)) & _MASK
            starts = self.starts[i]
            lo = int(starts[block])
            hi = min(int(starts[block + 1]), lo + BUCKET_CAP)
            if hi > lo:
                numbers = self.order[i][lo:hi]
                close = np.bitwise_count(self.hashes[numbers] ^ v) <= distance
                if close.any():
                    found.update(int(n) for n in numbers[close])
        if self._waiting:
            close = np.bitwise_count(self._recent[:self._waiting] ^ v) <= distance
            if close.any():
                found.update(len(self.hashes) + int(k) for k in np.flatnonzero(close))
        return sorted(found)

    def get(self, number: int) -> int:
        """Fingerprint `number`."""
        if number < len(self.hashes):
            return int(self.hashes[number])
        return int(self._recent[number - len(self.hashes)])

    def add(self, value: int) -> int:
        """File a fingerprint; its number."""
        self._recent[self._waiting] = value
        self._waiting += 1
        number = len(self) - 1
        if self._waiting == MERGE_EVERY:
            self._merge()
        return number

    def _merge(self) -> None:
        new = self._recent[:self._waiting].copy()
        numbers = np.arange(len(self.hashes), len(self.hashes) + len(new), dtype=np.uint32)
        blocks = self._blocks(new)
        for i in range(BLOCKS):
            by_key = np.argsort(blocks[:, i], kind="stable")
            keys = blocks[by_key, i]
            at = self.starts[i][keys.astype(np.int64) + 1]  # after their bucket's others
            self.order[i] = np.insert(self.order[i], at, numbers[by_key])
            self.starts[i] = self.starts[i] + self._starts(keys)
        self.hashes = np.concatenate([self.hashes, new])
        self._waiting = 0
