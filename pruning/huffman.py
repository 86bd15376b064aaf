"""Huffman code lengths: Deep Compression's third stage, as a storage figure.

Han, Mao & Dally (ICLR 2016, section 4) Huffman-code the 4-bit weight indices and the
sparse index of a pruned, weight-shared network and count the coded bits in their ratios
(LeNet-300-100: 40x). EIE's hardware reads fixed 8-bit entries (4-bit index + 4-bit zero
run), so `export.compression` reports both: as stored and Huffman-coded.
"""

from __future__ import annotations

import heapq
from collections import Counter

import numpy as np

__all__ = ["code_lengths", "coded_bits", "TABLE_BITS_PER_SYMBOL"]

TABLE_BITS_PER_SYMBOL = 5   # a canonical code is sent as one length (0..16 fits 5 bits) per symbol


def code_lengths(counts: dict) -> dict:
    """{symbol: code length} of an optimal prefix code for {symbol: count > 0}. A lone
    symbol gets 1 bit (a code needs at least one)."""
    items = [(int(c), s) for s, c in counts.items() if c > 0]
    if not items:
        return {}
    if len(items) == 1:
        return {items[0][1]: 1}
    # heap of (weight, tie-break, symbols under this node); merging adds one bit to each
    heap = [(c, i, [s]) for i, (c, s) in enumerate(sorted(items, key=lambda t: (t[0], str(t[1]))))]
    heapq.heapify(heap)
    lengths = {s: 0 for _, s in items}
    tie = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return lengths


def coded_bits(symbols, alphabet_size: int = 16) -> int:
    """Bits of `symbols` (integers) Huffman-coded with their own frequencies, plus the code's
    table (`TABLE_BITS_PER_SYMBOL` per symbol of the alphabet)."""
    counts = Counter(np.asarray(symbols).ravel().tolist())
    lengths = code_lengths(counts)
    return sum(counts[s] * n for s, n in lengths.items()) + TABLE_BITS_PER_SYMBOL * alphabet_size
