"""Step 4, in the parse processes: a page's visible text, its words and its simhash.

The text comes out of the tree in C (an XSLT stylesheet: libxslt walks the tree once, leaves
it whole), and the words and the simhash come out of the text in numpy, with no Python
object made per word: a page of 1 600 words costs about 0.2 ms here, where a regex's list of
words and a digest lookup per word cost 0.7 ms.
"""

from __future__ import annotations

import re
from copy import deepcopy
from typing import Any

# lxml ships no type information and lxml-stubs is not a dependency: its objects are Any here
import lxml.etree as etree  # type: ignore[import-untyped]

__all__ = ["HIDDEN", "INLINE", "SHINGLE", "figures", "hamming", "simhash_of", "visible_text"]

HIDDEN = frozenset({"script", "style", "noscript", "template", "head"})
# text on either side of these joins without a space: "<b>H</b>ello" is one word
INLINE = frozenset({"a", "abbr", "acronym", "b", "bdi", "bdo", "big", "cite", "code", "data",
                    "dfn", "em", "font", "i", "kbd", "label", "mark", "nobr", "q", "s", "samp",
                    "small", "span", "strike", "strong", "sub", "sup", "time", "tt", "u", "var",
                    "wbr"})

# Hidden elements and comments give nothing (the text after them, a node of its own in XPath's
# model, still comes), inline elements give their text as it stands, every other element its
# text between two spaces: block boundaries part words, inline ones do not.
_VISIBLE = etree.XSLT(etree.XML(f"""\
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="text" encoding="utf-8"/>
  <xsl:template match="{"|".join(sorted(HIDDEN))}|comment()|processing-instruction()"/>
  <xsl:template match="{"|".join(sorted(INLINE))}"><xsl:apply-templates/></xsl:template>
  <xsl:template match="*"><xsl:text> </xsl:text><xsl:apply-templates/><xsl:text> </xsl:text>
  </xsl:template>
</xsl:stylesheet>"""))

SHINGLE = 3  # words per simhash feature: the classic choice for near-duplicate web pages
# one odd multiplier per position in a shingle, so that "a b c" and "c b a" differ
_POSITION_FACTORS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9)[:SHINGLE]
# A word's hash: the polynomial sum(code point * P**i) modulo 2**64 (i from 0, P odd, so it has
# an inverse and a word's sum can be cut out of the text's prefix sums), then murmur3's
# finalizer. Text is hashed in pieces of at most 2 * _PIECE code points, cut where a word ends.
_P = 0x100000001B3  # FNV-1's 64-bit prime
_PIECE = 1 << 16
_NON_WORD = re.compile(r"\W")


def visible_text(root: Any) -> str:
    """The text a reader sees: no script, style, head or comments; blocks kept apart.

    The tree is left as it was (an extractor plugin may read it after).
    """
    try:
        return str(_VISIBLE(root))
    except etree.XSLTApplyError:  # libxslt's recursion limit, deeper than libxml2 nests
        copy = deepcopy(root)
        etree.strip_elements(copy, *HIDDEN, etree.Comment, etree.ProcessingInstruction,
                             with_tail=False)
        etree.strip_tags(copy, *INLINE)
        return " ".join(copy.itertext())


def figures(text: str) -> tuple[int, str | None]:
    """(words, simhash) of a text: its words are the runs of `\\w` (as Python's `re` reads
    it) in its lower case; a word longer than 65 536 characters counts as several.

    The simhash is Charikar's 64-bit simhash of the text's word shingles (Manku et al.); None
    for no words. The features are the distinct runs of `SHINGLE` consecutive words (a text
    shorter than that is one feature), each counted once: a template or a word repeated on
    every page weighs no more than any other run, and two texts agree on a bit when most of
    their distinct shingles do, so the distance follows their shingle overlap (Jaccard). A
    shingle's hash is the murmur3 finalizer of its words' hashes times one odd constant per
    position, and the 64 bit columns are summed for all shingles at once.
    """
    import numpy as np  # here, not at the top: only the parse processes pay its 13 MB

    text = text.lower()
    parts = [_word_hashes(text[start:end]) for start, end in _pieces(text)]
    words = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return len(words), _simhash(words)


def simhash_of(text: str) -> str | None:
    return figures(text)[1]


def hamming(a: str, b: str) -> int:
    """Bits that differ between two simhashes given as hex strings."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _pieces(text: str) -> list[tuple[int, int]]:
    spans = []
    start = 0
    while len(text) - start > 2 * _PIECE:
        cut = _NON_WORD.search(text, start + _PIECE, start + 2 * _PIECE)
        end = cut.start() if cut is not None else start + 2 * _PIECE
        spans.append((start, end))
        start = end
    spans.append((start, len(text)))
    return spans


class _Tables:
    """What the hashing reads, made once a process: the `\\w` flag of every code point, and
    P's powers and its inverse's powers up to a piece's length."""

    def __init__(self) -> None:
        import numpy as np

        every = np.arange(0x110000, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")
        # int8, the flags' own type: `take` then writes them in place, a third faster
        # than a fancy index's bool array copied into them
        self.word = np.zeros(0x110000, dtype=np.int8)
        for run in re.finditer(r"\w+", every):  # about 700 runs: 40 ms
            self.word[run.start():run.end()] = 1
        self.powers = self._powers(_P)
        self.inverses = self._powers(pow(_P, -1, 1 << 64))
        # bit i of byte value v, for the count of each bit among the features (`_simhash`)
        self.bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1,
                                  bitorder="little").astype(np.int64)
        self.byte_offsets = np.arange(8, dtype=np.intp) * 256

    @staticmethod
    def _powers(base: int) -> Any:
        import numpy as np

        powers = np.full(2 * _PIECE + 1, base, dtype=np.uint64)
        powers[0] = 1
        return np.cumprod(powers, dtype=np.uint64)  # wraps modulo 2**64, as meant


_tables: _Tables | None = None


def _the_tables() -> _Tables:
    global _tables
    if _tables is None:
        _tables = _Tables()
    return _tables


def _word_hashes(text: str) -> Any:
    """The hash of each word of a piece, in order, as a numpy uint64 array."""
    import numpy as np

    tables = _the_tables()
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    flags = np.zeros(len(codes) + 2, dtype=np.int8)
    # the arrays' own methods, not numpy's functions: those wrap them in Python, a few
    # microseconds a call, which a page of 1 300 words pays as much as the work itself
    tables.word.take(codes, out=flags[1:-1])
    edges = (flags[1:] != flags[:-1]).nonzero()[0]  # a word's start, then its end, ...
    starts, ends = edges[0::2], edges[1::2]
    sums = np.zeros(len(codes) + 1, dtype=np.uint64)
    (codes * tables.powers[: len(codes)]).cumsum(out=sums[1:])
    return _fmix64((sums[ends] - sums[starts]) * tables.inverses[starts])


def _simhash(words: Any) -> str | None:
    import numpy as np

    if not len(words):
        return None
    runs = max(1, len(words) - SHINGLE + 1)
    mixed = np.zeros(runs, dtype=np.uint64)
    for position, factor in enumerate(_POSITION_FACTORS[:len(words)]):
        mixed += words[position:position + runs] * np.uint64(factor)  # wraps, as meant
    # distinct by a sort and a look at each neighbour: numpy 2.4's np.unique hashes instead,
    # 245 us for 1 700 values against 18 us for this
    features = _fmix64(mixed)
    features.sort()
    if len(features) > 1:
        features = features[np.concatenate(([True], features[1:] != features[:-1]))]
    # how many features have each bit set: one bincount of (byte position, byte value) over
    # the features' little-endian bytes, then each value's bits (bit 8 * position + i); a
    # fourth cheaper than unpacking every bit and summing the 64 columns
    tables = _the_tables()
    octets = features.astype("<u8", copy=False).view(np.uint8).reshape(-1, 8)
    counts = np.bincount((octets + tables.byte_offsets).ravel(), minlength=8 * 256)
    majority = (counts.reshape(8, 256) @ tables.bits).ravel() * 2 > len(features)
    value = int.from_bytes(np.packbits(majority, bitorder="little").tobytes(), "little")
    return f"{value:016x}"


def _fmix64(k: Any) -> Any:
    """murmur3's 64-bit finalizer, in place on a numpy uint64 array: every input bit moves every
    output bit, so that a sum of hashes becomes a well-spread hash."""
    import numpy as np

    shift = np.uint64(33)
    k ^= k >> shift  # in place: `k` is the caller's scratch array
    k *= np.uint64(0xFF51AFD7ED558CCD)
    k ^= k >> shift
    k *= np.uint64(0xC4CEB9FE1A85EC53)
    k ^= k >> shift
    return k
