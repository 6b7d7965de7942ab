"""The near-duplicate index both stores keep: Manku et al.'s block tables, with a cap.

Two 64-bit simhashes within Hamming distance 3 agree exactly on at least one of their four
16-bit blocks (pigeonhole: 3 differing bits touch at most 3 blocks). So a fingerprint is filed
under four buckets, "block I has value X", and a lookup compares only the fingerprints of its
own four buckets. A bucket holds at most `BUCKET_CAP` distinct fingerprints, each 8 bytes in one
value (a SQLite BLOB, a Redis string): a lookup reads four values and compares at most
4 x `BUCKET_CAP` integers, however many pages the job holds. Random fingerprints fill a bucket
past the cap only beyond about 4 million distinct ones per job; past that, a full bucket takes no
more, and a near duplicate is missed only when every block it shares lies in a full bucket.
Identical fingerprints are filed once (a separate map says which page had it first), so a site
of many identical pages does not fill its buckets.

Above distance 3 the blocks no longer guarantee a shared bucket: the same buckets are searched,
and pairs that share no block are not found.
"""

from __future__ import annotations

from array import array

BLOCKS = 4
BLOCK_BITS = 16
BUCKET_CAP = 64  # fingerprints per bucket; crawler/frontier/lua/common.lua has the same
_MASK = (1 << BLOCK_BITS) - 1


def buckets(value: int) -> list[int]:
    """The four bucket numbers of a fingerprint: block index in the high bits, block below."""
    return [(i << BLOCK_BITS) | ((value >> (BLOCK_BITS * i)) & _MASK) for i in range(BLOCKS)]


def within(value: int, packed: bytes, distance: int) -> list[int]:
    """The fingerprints of a bucket's packed value within `distance` of `value`, in order."""
    return [h for h in array("Q", packed) if (h ^ value).bit_count() <= distance]


def pack(value: int) -> bytes:
    return array("Q", [value]).tobytes()


def signed(value: int) -> int:
    """A 64-bit fingerprint as SQLite's signed INTEGER."""
    return value - (1 << 64) if value >= 1 << 63 else value
