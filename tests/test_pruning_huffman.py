"""Huffman code lengths (Deep Compression's storage count, pruning/huffman.py)."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from eie.pruning.huffman import TABLE_BITS_PER_SYMBOL, code_lengths, coded_bits


def test_lengths_of_a_worked_example():
    # a:5 b:2 c:1 d:1 -> merge c+d (2), then b+(cd) (4), then a+(bcd): a 1 bit, b 2, c and d 3
    assert code_lengths({"a": 5, "b": 2, "c": 1, "d": 1}) == {"a": 1, "b": 2, "c": 3, "d": 3}
    assert code_lengths({7: 3}) == {7: 1}                    # a lone symbol still needs a bit
    assert code_lengths({}) == {} and code_lengths({1: 0}) == {}
    # 16 equally frequent symbols: the 4-bit fixed code is optimal
    assert set(code_lengths({s: 10 for s in range(16)}).values()) == {4}


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.dictionaries(st.integers(0, 15), st.integers(1, 10_000), min_size=2, max_size=16))
def test_a_complete_prefix_code_within_a_bit_of_the_entropy(counts):
    lengths = code_lengths(counts)
    assert set(lengths) == set(counts)
    assert sum(2.0 ** -n for n in lengths.values()) == 1.0     # Kraft equality: a complete prefix code
    total = sum(counts.values())
    bits = sum(counts[s] * lengths[s] for s in counts)
    entropy = -sum(c * math.log2(c / total) for c in counts.values())
    assert entropy - 1e-9 <= bits < entropy + total          # Shannon's bounds for an optimal code
    assert bits <= total * math.ceil(math.log2(len(counts)))  # never worse than a fixed-length code


def test_coded_bits_count_the_table():
    x = np.array([0, 0, 0, 5])
    assert coded_bits(x) == 4 + TABLE_BITS_PER_SYMBOL * 16
    assert coded_bits(x, alphabet_size=2) == 4 + TABLE_BITS_PER_SYMBOL * 2
