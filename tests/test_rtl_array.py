"""The whole EIE array in Amaranth's simulator against the golden and cycle models.

Every test loads an EIE image through the host bus (hdl/loader.py), runs samples back to
back and checks the outputs bit for bit against golden_model.run_image and the cycle
count of every sample against the cycle model; traced tests also compare the cycle of
every broadcast and every queue pop with the model's B and P.
"""

import numpy as np
import pytest
from amaranth.hdl import ResetInserter
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from eie.golden_model import encode_network
from eie.golden_model.errors import ConfigError
from eie.golden_model.image_file import load_image, save_image
from eie.golden_model.layout import n_blocks
from eie.golden_model.config import Timing
from eie.golden_model.functional import quantize_input
from eie.golden_model.model import run_image
from eie.hdl import host_map as hm
from eie.hdl.eie import EIEArray
from eie.hdl.loader import image_writes, input_writes, output_reads, params_for_image, start_writes
from eie.hdl.params import ArrayParams
from eie.hdl.rtl_sim import bus_read, bus_write, run_rtl

from .helpers import sparse_matrix

pytestmark = pytest.mark.sim


async def wait_idle(ctx, bus, polls: int = 10_000) -> None:
    """Poll STATUS until BUSY clears; a run that never ends fails the test instead of hanging it."""
    for _ in range(polls):
        if not await bus_read(ctx, bus, hm.address(hm.Region.CTRL, hm.Ctrl.STATUS)) & hm.Status.BUSY:
            return
    raise AssertionError(f"the array is still busy after {polls} status reads")


def int_inputs(rng, batch, n_in, density, scale=512):
    """Q7.8 activations in about [-2, 2), `density` of them non-zero."""
    a = rng.integers(-scale, scale, (batch, n_in))
    a[rng.random((batch, n_in)) >= density] = 0
    return a


def run_both(image, a_int, *, fifo_depth=8, acc_bits=48, trace=True, params=None):
    """Run on the RTL and the golden model; assert equal outputs, cycles and schedules."""
    params = params or params_for_image(image, fifo_depth=fifo_depth, acc_bits=acc_bits)
    gold = run_image(image, a_int, params.to_config(), int_input=True, trace=trace)
    rtl = run_rtl(image, a_int, params, trace=trace)
    np.testing.assert_array_equal(rtl.outputs, gold.outputs_int)
    assert rtl.cycles_per_sample == gold.report.cycles_per_sample
    if trace:
        assert len(rtl.batches) == len(gold.report.batches)
        for n, (bt, tr) in enumerate(zip(gold.report.batches, rtl.batches)):
            assert tr.broadcasts == bt.broadcast.tolist(), f"batch {n}: broadcast cycles"
            for k in range(params.n_pe):
                assert tr.pops[k] == bt.pop[:, k].tolist(), f"batch {n}: PE {k} pop cycles"
    return gold, rtl


# -- random layers and stacks over the issue's grid -------------------------------------
GRID = [(n, d) for n in (1, 2, 4, 8) for d in (1, 2, 8)]


@pytest.mark.parametrize("n_pe,fifo_depth", GRID)
def test_random_layer(n_pe, fifo_depth):
    rng = np.random.default_rng(100 * n_pe + fifo_depth)
    W = sparse_matrix(rng, 23, 30, 0.3)
    image = encode_network([W], n_pe, acc_depth=4, seed=1)
    gold, _ = run_both(image, int_inputs(rng, 3, 30, 0.6), fifo_depth=fifo_depth)
    assert gold.report.broadcasts > 0


@pytest.mark.parametrize("n_pe,fifo_depth", GRID)
def test_two_layer_stack_from_image_file(tmp_path, n_pe, fifo_depth):
    """An image saved to and loaded from disk: ReLU between layers, bank swap, 2 samples."""
    rng = np.random.default_rng(7 + 10 * n_pe + fifo_depth)
    W0, W1 = sparse_matrix(rng, 20, 17, 0.4), sparse_matrix(rng, 9, 20, 0.5)
    path = save_image(encode_network([W0, W1], n_pe, acc_depth=2, seed=2), tmp_path / "stack.eie")
    image = load_image(path)
    run_both(image, int_inputs(rng, 2, 17, 0.7), fifo_depth=fifo_depth)


@pytest.mark.parametrize("w_scale, x_scale, biased", [(1e9, 1e-3, False), (1e-15, 1e-15, False),
                                                     (1e9, 1e-9, True)])
def test_formats_far_from_1_are_bit_exact(tmp_path, w_scale, x_scale, biased):
    """Negative and large fractional bits (weights and inputs far from 1) from an image file:
    the array sees only the write-back shift, and matches the golden model bit for bit."""
    rng = np.random.default_rng(31)
    Ws = [sparse_matrix(rng, 13, 9, 0.5) * w_scale, sparse_matrix(rng, 6, 13, 0.5) / w_scale]
    x = rng.normal(0, 1, (2, 9)) * x_scale
    bs = [None, rng.normal(0, 0.5, 6) * x_scale] if biased else None
    image = encode_network(Ws, 3, acc_depth=2, calibration=x, biases=bs)
    image = load_image(save_image(image, tmp_path / "far.eie"))
    fracs = [f for L in image.layers for f in (L.in_frac, L.w_frac, L.out_frac)]
    assert min(fracs) < 0 and max(fracs) > 30
    gold, _ = run_both(image, quantize_input(image, x))
    assert np.count_nonzero(gold.outputs_int) > 0


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), n_pe=st.sampled_from([1, 2, 3, 4, 5, 8]),
       fifo_depth=st.sampled_from([1, 2, 3, 8]), acc_depth=st.integers(1, 6),
       n_in=st.integers(1, 24), n_out=st.integers(1, 24), layers=st.integers(1, 3),
       w_density=st.sampled_from([0.0, 0.05, 0.3, 1.0]), a_density=st.sampled_from([0.0, 0.2, 0.7, 1.0]))
def test_random_networks_property(seed, n_pe, fifo_depth, acc_depth, n_in, n_out, layers, w_density, a_density):
    """Random shapes (any N, not only powers of two), densities 0..100 %, 1..3 layers."""
    rng = np.random.default_rng(seed)
    dims = [n_in] + [int(rng.integers(1, 24)) for _ in range(layers - 1)] + [n_out]
    Ws = [sparse_matrix(rng, dims[i + 1], dims[i], w_density) for i in range(layers)]
    image = encode_network(Ws, n_pe, acc_depth=acc_depth, seed=seed % 1000)
    run_both(image, int_inputs(rng, 2, n_in, a_density), fifo_depth=fifo_depth)


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), n_pe=st.sampled_from([1, 2, 3, 4, 5, 8]),
       fifo_depth=st.sampled_from([1, 2, 8]), acc_depth=st.integers(1, 5),
       dims=st.lists(st.integers(1, 20), min_size=2, max_size=4),
       biased=st.lists(st.booleans(), min_size=3, max_size=3),
       w_density=st.sampled_from([0.0, 0.1, 0.5, 1.0]), a_density=st.sampled_from([0.0, 0.3, 1.0]))
def test_biases_property(seed, n_pe, fifo_depth, acc_depth, dims, biased, w_density, a_density):
    """Layers with and without a bias column in any mix: the column's PE is n_in mod N, its
    entry the last of that PE's list (an all-zero input broadcasts the bias alone)."""
    rng = np.random.default_rng(seed)
    Ws = [sparse_matrix(rng, dims[i + 1], dims[i], w_density) for i in range(len(dims) - 1)]
    bs = [rng.normal(0, 0.5, dims[i + 1]) if biased[i] else None for i in range(len(dims) - 1)]
    image = encode_network(Ws, n_pe, acc_depth=acc_depth, biases=bs, seed=seed % 1000)
    gold, _ = run_both(image, int_inputs(rng, 2, dims[0], a_density), fifo_depth=fifo_depth)
    for i, L in enumerate(image.layers):
        cols = [bt.columns for bt in gold.report.batches if bt.layer == i]
        assert all((len(c) > 0 and c[-1] == L.n_in) == L.bias for c in cols)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), n_pe=st.sampled_from([1, 3, 4, 5, 16, 17]),
       fifo_depth=st.sampled_from([1, 2, 8]), acc_depth=st.integers(1, 4),
       dims=st.lists(st.integers(1, 40), min_size=2, max_size=3),
       a_density=st.sampled_from([0.0, 0.3, 1.0]))
def test_leaf_slice_property(seed, n_pe, fifo_depth, acc_depth, dims, a_density):
    """The build with a register slice before every LNZD leaf: list_latency one more, and
    the array still matches the cycle model (with that timing) at every broadcast and pop."""
    rng = np.random.default_rng(seed)
    Ws = [sparse_matrix(rng, dims[i + 1], dims[i], 0.4) for i in range(len(dims) - 1)]
    bs = [rng.normal(0, 0.5, d) if rng.random() < 0.5 else None for d in dims[1:]]
    image = encode_network(Ws, n_pe, acc_depth=acc_depth, biases=bs, seed=seed % 1000)
    params = params_for_image(image, fifo_depth=fifo_depth, leaf_slice=True)
    assert params.to_config().timing.list_latency == Timing().list_latency + 1
    a = int_inputs(rng, 2, dims[0], a_density)
    gold, _ = run_both(image, a, params=params)
    plain = run_image(image, a, params_for_image(image, fifo_depth=fifo_depth).to_config(), int_input=True, trace=True)
    for bs_, bp in zip(gold.report.batches, plain.report.batches):   # every batch's first broadcast: one later
        assert len(bs_.broadcast) == len(bp.broadcast)
        if len(bp.broadcast):
            assert bs_.broadcast[0] == bp.broadcast[0] + 1


def test_bias_field_is_written_for_every_layer():
    """The loader writes every layer's BIAS field, 0 without a bias, so a bias-free image
    loaded after a biased one on the same array does not keep the old bias column."""
    rng = np.random.default_rng(12)
    W = sparse_matrix(rng, 9, 7, 0.5)
    biased = encode_network([W], 2, acc_depth=4, biases=[rng.normal(0, 0.5, 9)])
    plain = encode_network([W], 2, acc_depth=4)
    params = params_for_image(biased)
    field = hm.address(hm.Region.LAYER, hm.LayerField.BIAS)
    assert [d for adr, d in image_writes(biased, params) + image_writes(plain, params) if adr == field] == [
        (1 << biased.layers[0].in_frac) | (7 % 2) << 16 | (7 // 2) << 32, 0]


def test_pointer_words_carry_the_column_counts():
    """Every PTR write holds, in bits 0-1, the entries of the column ending there, saturated
    at 3 (0 for a layer's first pointer), and from bit 2 the absolute entry index: what
    the issue stage decides from. Columns of 0 to 5 entries in every PE, two layers (absolute bases)."""
    rng = np.random.default_rng(21)
    W0 = sparse_matrix(rng, 12, 10, 0.5)
    W0[:, 3] = 0                                  # an empty column
    W0[:, 4] = 1.0                                # 12 rows: 6 entries per PE at N = 2
    image = encode_network([W0, sparse_matrix(rng, 6, 12, 0.6)], 2, acc_depth=8)
    params = params_for_image(image)
    words = {}
    for adr, d in image_writes(image, params):
        region, pe, offset = hm.split_address(adr)
        if region == hm.Region.PTR:
            words[pe, offset] = d
    seen = set()
    base = 0
    for li, L in enumerate(image.layers):
        for k in range(2):
            p = L.ptr[k].astype(int)
            entry_base = sum(int(M.ptr[k][-1]) for M in image.layers[:li])
            for t in range(len(p)):
                count = 0 if t == 0 else p[t] - p[t - 1]
                seen.add(min(count, 9))
                assert words[k, base + t] == min(count, 3) | (p[t] + entry_base) << 2
        base += L.ptr.shape[1]
    assert {0, 1, 2}.issubset(seen) and max(seen) > 3
    assert len(words) == 2 * base


def test_default_parameters_build():
    """The default 4-PE array (full-size memories), not only the trimmed test builds."""
    rng = np.random.default_rng(3)
    image = encode_network([sparse_matrix(rng, 70, 50, 0.2), sparse_matrix(rng, 10, 70, 0.3)], 4, seed=0)
    run_both(image, int_inputs(rng, 2, 50, 0.5), params=ArrayParams())


# -- the corner cases, by name ------------------------------------------------------------
def column_matrix(n_out, n_in, cells, value=0.75):
    W = np.zeros((n_out, n_in))
    for r, c in cells:
        W[r, c] = value if (r + c) % 2 else -value
    return W


def test_runs_of_15_and_16_zeros():
    """z = 15 without padding, and 16 zeros needing a padding entry (v = 0), one PE."""
    W = column_matrix(40, 3, [(0, 0), (16, 0), (33, 0), (16, 1), (39, 2)])
    image = encode_network([W], 1, acc_depth=64)
    L = image.layers[0]
    assert 15 in L.z.tolist() and (L.v == 0).any()       # both cases really occur
    run_both(image, np.array([[256, -300, 77], [0, 512, 1]]))


def test_empty_columns():
    rng = np.random.default_rng(4)
    W = sparse_matrix(rng, 12, 16, 0.5)
    W[:, ::3] = 0                                         # empty in every PE
    W[0::4, 1] = 0                                        # empty in PE 0 only (N = 4)
    image = encode_network([W], 4, acc_depth=64)
    gold, _ = run_both(image, np.full((1, 16), 100))
    assert gold.report.as_dict()["per_pe"][0]["empty_columns"] > 0


def test_all_zero_input():
    rng = np.random.default_rng(5)
    image = encode_network([sparse_matrix(rng, 10, 8, 0.5), sparse_matrix(rng, 6, 10, 0.5)], 2, acc_depth=4)
    gold, rtl = run_both(image, np.zeros((2, 8), dtype=np.int64))
    assert gold.report.broadcasts == 0 and not rtl.outputs.any()


def test_all_zero_matrix():
    image = encode_network([np.zeros((9, 11))], 4, acc_depth=2)
    gold, rtl = run_both(image, np.arange(1, 12)[None, :] * 37)
    assert gold.report.broadcasts == 11 * n_blocks(9, 4, 2) and not rtl.outputs.any()


def test_column_entirely_in_one_pe():
    """Column 1's entries all sit in PE 2; the other PEs spend one bubble on it."""
    cells = [(r, 1) for r in range(2, 40, 4)] + [(0, 0), (5, 2), (7, 3)]
    image = encode_network([column_matrix(40, 4, cells)], 4, acc_depth=16)
    counts = image.layers[0].column_counts()
    assert counts[2, 1] == 10 and counts[[0, 1, 3], 1].sum() == 0
    run_both(image, np.array([[300, 200, -100, 50]]))


def test_same_accumulator_on_consecutive_cycles():
    """One output row hit by every column back to back: the bypass, never a stall."""
    W = np.zeros((3, 12))
    W[0, :] = np.linspace(-1, 1, 12) + 0.05
    image = encode_network([W], 1, acc_depth=4)
    gold, _ = run_both(image, np.arange(1, 13)[None, :] * 40)
    # 12 single-entry columns issue in 12 consecutive cycles: no hazard stall anywhere
    issues = gold.report.batches[0].pop[:, 0] + 1
    assert (np.diff(issues) == 1).all()


@pytest.mark.parametrize("fifo_depth", [1, 2])
def test_full_queues_stall_the_broadcast(fifo_depth):
    """PE 0 holds long columns, the others nothing: their queues fill and the LNZD waits."""
    cells = [(r, c) for c in range(10) for r in range(0, 36, 4)]
    image = encode_network([column_matrix(36, 10, cells)], 4, acc_depth=16)
    gold, _ = run_both(image, np.full((1, 10), 64), fifo_depth=fifo_depth)
    assert gold.report.broadcast_stall_cycles > 0


def test_fewer_rows_than_pes():
    rng = np.random.default_rng(8)
    image = encode_network([sparse_matrix(rng, 3, 10, 0.7)], 8, acc_depth=2)
    run_both(image, int_inputs(rng, 2, 10, 0.8))


def test_rows_not_a_multiple_of_n():
    rng = np.random.default_rng(9)
    image = encode_network([sparse_matrix(rng, 13, 9, 0.6)], 4, acc_depth=64)
    run_both(image, int_inputs(rng, 2, 9, 0.8))


def test_outputs_longer_than_one_batch():
    """n_out beyond N x acc_depth: several output batches, each re-broadcasting the input."""
    rng = np.random.default_rng(10)
    image = encode_network([sparse_matrix(rng, 37, 12, 0.4)], 2, acc_depth=4)
    assert n_blocks(37, 2, 4) == 5
    gold, _ = run_both(image, int_inputs(rng, 2, 12, 0.6))
    assert len(gold.report.batches) == 2 * 5


def test_writeback_overlaps_the_next_batch():
    """A long layer in several batches: each batch's write-back runs while the next one
    computes (the other accumulator bank), so a batch costs compute + pipeline_latency."""
    rng = np.random.default_rng(12)
    image = encode_network([sparse_matrix(rng, 48, 40, 0.5), sparse_matrix(rng, 9, 48, 0.5)], 2, acc_depth=4)
    gold, _ = run_both(image, int_inputs(rng, 1, 40, 0.9))
    t = Timing()
    first = [b for b in gold.report.batches if b.layer == 0]
    assert len(first) == 6
    assert all(b.compute_cycles > b.writeback_rows + t.writeback_latency for b in first)   # nothing to wait for
    for b in first[:-1]:
        assert b.cycles == b.compute_cycles + t.pipeline_latency
    assert first[-1].cycles == first[-1].compute_cycles + t.pipeline_latency + 4 + t.writeback_latency


def test_batch_waits_for_a_longer_writeback():
    """Batches that compute for fewer cycles than the previous write-back takes (a sparse
    input, 32 rows per batch): the next write-back, and the batch after it, wait."""
    rng = np.random.default_rng(13)
    W = sparse_matrix(rng, 200, 6, 0.2)
    image = encode_network([W, sparse_matrix(rng, 5, 200, 0.3)], 2, acc_depth=32)
    a = np.zeros((2, 6), dtype=np.int64)
    a[0, 2] = 300                                         # one broadcast per batch; none at all
    gold, _ = run_both(image, a)
    t = Timing()
    first = [b for b in gold.report.batches if b.layer == 0][:4]
    assert any(b.compute_cycles + t.pipeline_latency < b.writeback_rows + t.writeback_latency for b in first)
    assert any(b.cycles > b.compute_cycles + t.pipeline_latency for b in first[1:-1])   # waited


def test_register_file_swap_across_layers():
    """Three layers (odd): the banks swap three times per sample, then the next sample
    loads into the bank that just held the output."""
    rng = np.random.default_rng(11)
    Ws = [sparse_matrix(rng, 14, 10, 0.5), sparse_matrix(rng, 11, 14, 0.5), sparse_matrix(rng, 6, 11, 0.6)]
    image = encode_network(Ws, 2, acc_depth=4)
    gold, _ = run_both(image, int_inputs(rng, 3, 10, 0.9))
    hidden = gold.layer_outputs[1]
    assert (hidden == 0).any() and (hidden > 0).any()     # ReLU zeros feed the next LNZD


@pytest.mark.parametrize("acc_bits", [16, 20])
def test_accumulator_saturation(acc_bits):
    """Narrow accumulators saturate (order-dependent); the RTL saturates the same way."""
    rng = np.random.default_rng(acc_bits)
    cb = np.array([0.0] + list(np.linspace(-100, 100, 15)))
    W = sparse_matrix(rng, 8, 24, 0.8) * 200
    image = encode_network([W], 2, acc_depth=8, codebooks=[cb])
    a = rng.integers(-32768, 32767, (2, 24))
    gold, _ = run_both(image, a, acc_bits=acc_bits)
    wide = run_image(image, a, params_for_image(image, acc_bits=48).to_config(), int_input=True)
    assert (wide.outputs_int != gold.outputs_int).any()   # saturation changed results


def test_output_saturation_to_16_bits():
    cb = np.array([0.0] + list(np.linspace(-120, 120, 15)))
    rng = np.random.default_rng(12)
    W = sparse_matrix(rng, 10, 20, 0.9) * 200
    image = encode_network([W], 4, acc_depth=4, codebooks=[cb], act_frac=8)
    gold, _ = run_both(image, rng.integers(-32768, 32767, (2, 20)))
    assert (np.abs(gold.outputs_int) == 32767).any() or (gold.outputs_int == -32768).any()


# -- host protocol -----------------------------------------------------------------------
def test_reset_in_the_middle_of_a_run():
    """Reset while a run is busy, reload, run again: the result is as if nothing happened."""
    rng = np.random.default_rng(13)
    image = encode_network([sparse_matrix(rng, 16, 12, 0.6), sparse_matrix(rng, 5, 16, 0.6)], 2, acc_depth=4)
    a = int_inputs(rng, 2, 12, 0.9)
    gold = run_image(image, a, int_input=True)
    params = params_for_image(image)
    rst = __import__("amaranth").Signal()
    dut = EIEArray(params)
    top = ResetInserter(rst)(dut)
    got = []

    async def host(ctx):
        await bus_write(ctx, dut.bus, image_writes(image, params) + input_writes(a[0], 2) + start_writes())
        await ctx.tick().repeat(25)                     # part-way through layer 0
        assert await bus_read(ctx, dut.bus, hm.address(hm.Region.CTRL, hm.Ctrl.STATUS)) & hm.Status.BUSY
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        status = await bus_read(ctx, dut.bus, hm.address(hm.Region.CTRL, hm.Ctrl.STATUS))
        assert status == 0                               # idle, no stale DONE
        await bus_write(ctx, dut.bus, image_writes(image, params))
        for s in range(2):
            await bus_write(ctx, dut.bus, input_writes(a[s], 2) + start_writes())
            await wait_idle(ctx, dut.bus)
            got.append([await bus_read(ctx, dut.bus, r) & 0xFFFF for r in output_reads(5, 2)])

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    words = np.array(got, dtype=np.int64)
    np.testing.assert_array_equal(np.where(words >= 1 << 15, words - (1 << 16), words), gold.outputs_int)


def test_writes_while_busy_are_ignored_and_registers_read_back():
    rng = np.random.default_rng(14)
    image = encode_network([sparse_matrix(rng, 8, 8, 0.8)], 2, acc_depth=4)
    a = int_inputs(rng, 1, 8, 1.0)
    gold = run_image(image, a, int_input=True)
    params = params_for_image(image)
    dut = EIEArray(params)
    seen = {}

    async def host(ctx):
        bus = dut.bus
        await bus_write(ctx, bus, image_writes(image, params) + input_writes(a[0], 2) + start_writes())
        # while busy: try to clobber the codebook and an input; both must be ignored
        await bus_write(ctx, bus, [(hm.address(hm.Region.CODEBOOK, v), 0) for v in range(16)]
                        + [(hm.address(hm.Region.ACT, 0, 0), 0)])
        await wait_idle(ctx, bus)
        seen["status"] = await bus_read(ctx, bus, hm.address(hm.Region.CTRL, hm.Ctrl.STATUS))
        seen["info"] = await bus_read(ctx, bus, hm.address(hm.Region.CTRL, hm.Ctrl.INFO))
        seen["layers"] = await bus_read(ctx, bus, hm.address(hm.Region.CTRL, hm.Ctrl.N_LAYERS))
        seen["runs"] = await bus_read(ctx, bus, hm.address(hm.Region.CTRL, hm.Ctrl.RUNS))
        seen["cycles"] = await bus_read(ctx, bus, hm.address(hm.Region.CTRL, hm.Ctrl.CYCLES))
        seen["out"] = [await bus_read(ctx, bus, r) for r in output_reads(8, 2)]   # sign-extended

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    assert seen["status"] == hm.Status.DONE
    assert seen["info"] == 2 | params.fifo_depth << 16 | params.acc_depth << 32 | params.max_layers << 48
    assert seen["layers"] == 1 and seen["runs"] == 1
    assert seen["cycles"] == gold.report.cycles
    out = [w - (1 << 64) if w >> 63 else w for w in seen["out"]]
    np.testing.assert_array_equal(out, gold.outputs_int[0])


def test_held_outputs_read_twice_then_given_up_by_a_new_input():
    """The run's last batch stays in the accumulators: reading its outputs (with a multi-
    batch layer, also those written back earlier) gives the golden values every time; an
    activation write gives them up (reads then return the activation memory, here the
    value just written), and the next START's outputs are again exact."""
    rng = np.random.default_rng(21)
    image = encode_network([sparse_matrix(rng, 20, 12, 0.7)], 2, acc_depth=4)   # 10 rows per PE: 3 batches
    a = int_inputs(rng, 2, 12, 0.9)
    gold = run_image(image, a, int_input=True)
    params = params_for_image(image)
    dut = EIEArray(params)
    reads = output_reads(20, 2)
    seen = {}

    def signed(w):
        return w - (1 << 64) if w >> 63 else w

    async def host(ctx):
        bus = dut.bus
        await bus_write(ctx, bus, image_writes(image, params) + input_writes(a[0], 2) + start_writes())
        await wait_idle(ctx, bus)
        seen["first"] = [signed(await bus_read(ctx, bus, r)) for r in reads]
        seen["again"] = [signed(await bus_read(ctx, bus, r)) for r in reversed(reads)][::-1]
        # output 18 = local row 9 of PE 0: in the last batch (held); write a marker there
        marker = hm.address(hm.Region.ACT, 9, 0)
        await bus_write(ctx, bus, [(marker, 1234)])
        seen["released"] = signed(await bus_read(ctx, bus, marker))
        await bus_write(ctx, bus, input_writes(a[1], 2) + start_writes())
        await wait_idle(ctx, bus)
        seen["second"] = [signed(await bus_read(ctx, bus, r)) for r in reads]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    assert n_blocks(20, 2, 4) == 3
    np.testing.assert_array_equal(seen["first"], gold.outputs_int[0])
    np.testing.assert_array_equal(seen["again"], gold.outputs_int[0])
    assert seen["released"] == 1234
    np.testing.assert_array_equal(seen["second"], gold.outputs_int[1])


def test_loader_rejects_images_that_do_not_fit():
    rng = np.random.default_rng(15)
    image = encode_network([sparse_matrix(rng, 40, 30, 0.9)], 2, acc_depth=8)
    with pytest.raises(ConfigError, match="built for 2 PEs"):
        image_writes(image, ArrayParams(n_pe=4))
    with pytest.raises(ConfigError, match="acc_depth"):
        image_writes(image, ArrayParams(n_pe=2, acc_depth=4))
    with pytest.raises(ConfigError, match="ptr_depth"):
        image_writes(image, ArrayParams(n_pe=2, ptr_depth=16))
    with pytest.raises(ConfigError, match="spmat_depth"):
        image_writes(image, ArrayParams(n_pe=2, spmat_depth=8))
    with pytest.raises(ConfigError, match="act_depth"):
        image_writes(image, ArrayParams(n_pe=2, act_depth=16))
    with pytest.raises(ConfigError, match="max_layers"):
        image_writes(encode_network([sparse_matrix(rng, 4, 4, 1.0)] * 3, 2), ArrayParams(n_pe=2, max_layers=2))


def test_n_layers_beyond_max_layers_still_ends():
    """N_LAYERS larger than the descriptors on chip runs them all and stops (no hang)."""
    rng = np.random.default_rng(16)
    image = encode_network([sparse_matrix(rng, 6, 6, 0.8), sparse_matrix(rng, 6, 6, 0.8)], 2, acc_depth=4)
    a = int_inputs(rng, 1, 6, 1.0)
    gold = run_image(image, a, int_input=True)
    params = params_for_image(image)              # max_layers = 2
    assert params.max_layers == 2
    dut = EIEArray(params)
    out = []

    async def host(ctx):
        bus = dut.bus
        await bus_write(ctx, bus, image_writes(image, params) + [(hm.address(hm.Region.CTRL, hm.Ctrl.N_LAYERS), 3)]
                        + input_writes(a[0], 2) + start_writes())
        await wait_idle(ctx, bus, polls=2000)
        out.extend([await bus_read(ctx, bus, r) & 0xFFFF for r in output_reads(6, 2)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    words = np.array(out)
    np.testing.assert_array_equal(np.where(words >= 1 << 15, words - (1 << 16), words), gold.outputs_int[0])
