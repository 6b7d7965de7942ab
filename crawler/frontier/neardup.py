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
job, holds them in memory (`BlockIndex`: each bucket a chain of fingerprint numbers in flat
arrays), rebuilt at open from an append-only table of fingerprints: a page costs one
sequential row, not four random B-tree writes, and a lookup walks four capped chains, flat in
the size of the job.

Above distance 3 the blocks no longer guarantee a shared bucket: the same buckets are searched,
and pairs that share no block are not found.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

BLOCKS = 4
BLOCK_BITS = 16
BUCKET_CAP = 64  # fingerprints compared per bucket; crawler/frontier/lua/common.lua has the same
_MASK = (1 << BLOCK_BITS) - 1


def buckets(value: int) -> list[int]:
    """The four bucket numbers of a fingerprint: block index in the high bits, block below."""
    return [(i << BLOCK_BITS) | ((value >> (BLOCK_BITS * i)) & _MASK) for i in range(BLOCKS)]


def signed(value: int) -> int:
    """A 64-bit fingerprint as SQLite's signed INTEGER."""
    return value - (1 << 64) if value >= 1 << 63 else value


class BlockIndex:
    """Fingerprints numbered 0, 1, 2... in filing order, searchable by block.

    `hashes[n]` is fingerprint n. Each bucket is a chain of entries in filing order, kept in
    flat arrays: `_head` and `_tail` give a bucket's first and last entry, `_next` links an
    entry to the next of its bucket and `_number` names its fingerprint; `_count` stops a
    bucket at `BUCKET_CAP` (later ones would never be compared). Plain `array`s, not numpy:
    about 40 bytes a fingerprint plus 2.3 MB of bucket heads, a lookup walks at most
    4 x `BUCKET_CAP` entries with no per-call overhead, and the main process, which holds
    the index, does not load numpy (13 MB of RSS) for it.
    """

    def __init__(self, values: Iterable[int] = ()) -> None:
        slots = BLOCKS << BLOCK_BITS
        self.hashes = array("Q")
        self._head = array("i", [-1]) * slots
        self._tail = array("i", [-1]) * slots
        self._count = bytearray(slots)
        self._next = array("i")
        self._number = array("I")
        for value in values:
            self.add(value)

    def __len__(self) -> int:
        return len(self.hashes)

    def near(self, value: int, distance: int) -> list[int]:
        """Numbers of the filed fingerprints within `distance` of `value`, earliest first,
        from the value's four buckets (the first `BUCKET_CAP` of each)."""
        found: set[int] = set()
        hashes, following, number, head = self.hashes, self._next, self._number, self._head
        for i in range(BLOCKS):
            entry = head[(i << BLOCK_BITS) | ((value >> (BLOCK_BITS * i)) & _MASK)]
            while entry >= 0:
                n = number[entry]
                if (hashes[n] ^ value).bit_count() <= distance:
                    found.add(n)
                entry = following[entry]
        return sorted(found)

    def get(self, number: int) -> int:
        """Fingerprint `number`."""
        return self.hashes[number]

    def add(self, value: int) -> int:
        """File a fingerprint; its number."""
        number = len(self.hashes)
        self.hashes.append(value)
        count, tail, entries = self._count, self._tail, self._number
        for i in range(BLOCKS):
            bucket = (i << BLOCK_BITS) | ((value >> (BLOCK_BITS * i)) & _MASK)
            if count[bucket] >= BUCKET_CAP:
                continue
            count[bucket] += 1
            entry = len(entries)
            entries.append(number)
            self._next.append(-1)
            last = tail[bucket]
            if last < 0:
                self._head[bucket] = entry
            else:
                self._next[last] = entry
            tail[bucket] = entry
        return number
