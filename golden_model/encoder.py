"""Dense weights -> per-PE interleaved CSC (docs/image-format.md), vectorised.

Row i goes to PE i mod N (local row i div N); local rows are cut into output batches
of `acc_depth`; within each (batch, column) the entries are stored in row order with
z = zeros before the entry in that column (per-column counting, reset at each column
start). A gap of g zeros needs g // 16 padding entries (v = 0, z = 15), then the real
entry with z = g % 16 (EIE paper, Fig. 2 and Section III).

A bias (`bias=` / `biases=`) is stored as the authors store FC8's: one more column,
index n_in, whose activation is always 1.0; it shares the layer's codebook (k-means
runs over the weights and the biases together) and is never permuted.

The packing itself is csc.py's. Load balancing (golden_model/balance.py) only changes which logical row each hardware
row holds: `encode_layer(..., row_perm=, col_perm=)` stores W[row_perm][:, col_perm],
and `encode_network(..., balance=True)` chooses the permutations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import numerics as nm
from .balance import BalanceOptions, balance_image
from .codebook import assign_indices, check_codebook, fixed_point_codebook, kmeans_codebook
from .csc import DEFAULT_ACC_DEPTH, check_pe_args, encode_indices
from .errors import InputError
from .image import EIEImage, EncodedLayer, permutation_problem
from .user_arrays import real_array

__all__ = ["check_weights", "check_bias", "check_permutation", "encode_layer", "encode_network", "quantisation_report",
           "writeback_format", "DEFAULT_ACT_FRAC", "MAX_WEIGHT", "FAR_CODEBOOK_REL_RMS"]

DEFAULT_ACT_FRAC = 8   # Q7.8 when no calibration input is given
MAX_WEIGHT = nm.MAX_MAGNITUDE  # |w| below this fits the widest format (w_frac = MIN_FRAC): about 1.7e38
# A given codebook whose decoded weights are this far from the weights (relative RMS error) is
# most likely of the wrong scale or for another layer: `eie encode` warns (docs/numerics.md).
# k-means codebooks of 16 values stay far below it (a few per cent on any layer).
FAR_CODEBOOK_REL_RMS = 0.5


MAX_SEED = (1 << 32) - 1  # k-means (scikit-learn) takes seeds 0 .. 2**32 - 1


def check_seed(seed) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed must be an integer in 0..{MAX_SEED}, not {seed!r}")
    return int(seed)


def check_weights(W, what: str) -> np.ndarray:
    """A dense weight matrix as float64: 2-D, non-empty, real, finite, |w| < MAX_WEIGHT."""
    W = real_array(W, what)
    if W.ndim != 2 or 0 in W.shape:
        raise InputError(f"{what}: expected a non-empty 2-D weight matrix (n_out, n_in), got shape {W.shape}")
    with np.errstate(all="ignore"):
        W = W.astype(np.float64)
    if not np.all(np.isfinite(W)):
        r, c = np.argwhere(~np.isfinite(W))[0]
        raise InputError(f"{what}: element [{r}, {c}] is {float(W[r, c])!r}; expected finite numbers")
    big = np.abs(W) >= MAX_WEIGHT
    if np.any(big):
        r, c = np.argwhere(big)[0]
        raise InputError(f"{what}: element [{r}, {c}] is {float(W[r, c]):.6g}; {nm.magnitude_limit('weights')}")
    return W


def check_bias(b, n_out: int, what: str) -> np.ndarray | None:
    """None, or a bias vector as float64 (n_out,): real, finite, in the weights' range."""
    if b is None:
        return None
    b = real_array(b, what)
    if b.ndim != 1 or b.shape[0] != n_out:
        raise InputError(f"{what}: expected a bias vector of shape ({n_out},) (one per output row), got shape {b.shape}")
    return check_weights(b.astype(np.float64)[:, None], what)[:, 0]


def quantisation_report(W, idx, codebook_float, codebook_int, w_frac: int, what: str) -> dict:
    """How far the fixed-point weights are from W; InputError when a layer would be lost.

    The rule (docs/numerics.md): refuse when a non-zero weight would decode to a saturated
    codebook value, when every non-zero weight would decode to 0, or when one of at least
    one step (2**-w_frac) would through a non-zero codebook value that rounds to 0; other
    weights that decode to 0 (below one step, or an entry given as 0.0) are counted.
    """
    mask = idx > 0
    w = W[mask]
    if w.size == 0:
        return {"w_frac": int(w_frac), "max_abs_error": 0.0, "rel_rms_error": 0.0, "decoded_to_zero": 0}
    step = nm.pow2(-w_frac)
    lo, hi = nm.int_range(nm.WEIGHT_BITS)
    scaled = np.floor(np.asarray(codebook_float, dtype=np.float64) * nm.pow2(w_frac) + 0.5)
    saturated = (scaled < lo) | (scaled > hi)
    used = idx[mask].astype(np.int64)
    q = np.asarray(codebook_int, dtype=np.float64)[used] * step
    if np.any(saturated[used]):
        k = int(used[saturated[used]][0])
        raise InputError(f"{what}: codebook value {float(codebook_float[k]):.6g} (entry {k}) saturates the 16-bit "
                         f"weight format (at most {hi} at w_frac {w_frac}): {int(np.count_nonzero(saturated[used]))} "
                         f"non-zero weights would decode to {float(codebook_int[k]) * step:g}")
    zero = q == 0
    amax = float(np.abs(w).max())
    if np.all(zero):
        raise InputError(f"{what}: all {w.size} non-zero weights would decode to 0 (largest |w| = {amax:.3g}; "
                         f"codebook step 2^{-w_frac} = {step:.3g}): scale the weights (or the codebook) by a power of two into "
                         f"the 16-bit range, at most 2^-{nm.MAX_FRAC} = {nm.pow2(-nm.MAX_FRAC):.3g} per step (docs/numerics.md)")
    # an entry the codebook sets to exactly 0.0 is the user's choice (counted, not refused)
    lost = zero & (np.abs(w) >= step) & (np.asarray(codebook_float)[used] != 0)
    if np.any(lost):
        k = int(used[lost][0])
        raise InputError(f"{what}: {int(np.count_nonzero(lost))} non-zero weights of at least one step "
                         f"(2^{-w_frac} = {step:.3g}) would decode to 0 through codebook entry {k} = "
                         f"{float(codebook_float[k]):.3g} (the largest codebook value sets w_frac = {w_frac})")
    err = q - w
    return {"w_frac": int(w_frac), "max_abs_error": float(np.abs(err).max()),
            "rel_rms_error": float(np.sqrt(np.sum(err ** 2) / np.sum(w ** 2))),
            "decoded_to_zero": int(np.count_nonzero(zero))}


def _describe(x) -> str:
    return f"an array of shape {x.shape}" if isinstance(x, np.ndarray) else \
        f"{len(x)} entries" if hasattr(x, "__len__") else repr(x)


def check_permutation(perm, n: int, what: str) -> np.ndarray | None:
    """None, or `perm` as int64 after checking it is a permutation of range(n) (InputError)."""
    if perm is None:
        return None
    msg = permutation_problem(perm, n)
    if msg:
        raise InputError(f"{what}: {msg}")
    return np.asarray(perm, dtype=np.int64)


def encode_layer(W, n_pe: int, *, acc_depth: int = DEFAULT_ACC_DEPTH, codebook=None,
                 in_frac: int = DEFAULT_ACT_FRAC, out_frac: int = DEFAULT_ACT_FRAC,
                 relu: bool = True, name: str = "fc0", seed: int = 0,
                 row_perm=None, col_perm=None, bias=None) -> EncodedLayer:
    """Weight-share (k-means or the given codebook) and encode one dense layer,
    y = act(W a + bias) (`bias`: None, or one value per row, shared with W's codebook).

    With `row_perm` / `col_perm` (permutations of the rows / columns of W) hardware row
    r holds W's row row_perm[r] and hardware column c is W's column col_perm[c].
    """
    return _encode_layer(W, n_pe, acc_depth=acc_depth, codebook=codebook, in_frac=in_frac, out_frac=out_frac,
                         relu=relu, name=name, seed=seed, row_perm=row_perm, col_perm=col_perm, bias=bias)[0]


def _with_bias(W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """W, or [W | b]: the stored matrix with the bias as its last column."""
    return W if b is None else np.concatenate([W, b[:, None]], axis=1)


def writeback_format(out_frac: int, in_frac: int, w_frac: int, name: str) -> int:
    """out_frac moved into in_frac + w_frac - 47 .. in_frac + w_frac, so that the write-back
    shift s is in 0..47; InputError naming the layer when no format in range does that.

    Lowering out_frac to s = 0 only drops bits the accumulator does not have; raising it to
    s = 47 loses nothing either: a 48-bit accumulator shifted by 47 is -1, 0 or 1 at any
    coarser format too.
    """
    top = in_frac + w_frac
    s_max = nm.MAX_ACC_BITS - 1
    capped = min(max(out_frac, top - s_max), top)
    if not nm.MIN_FRAC <= capped <= nm.MAX_FRAC:
        need = f"at least {top - s_max}" if capped > nm.MAX_FRAC else f"at most {top}"
        raise InputError(f"{name}: the write-back shift in_frac + w_frac - out_frac = {in_frac} + {w_frac} - out_frac "
                         f"must be in 0..{s_max}, so out_frac must be {need}, outside {nm.MIN_FRAC}..{nm.MAX_FRAC} "
                         f"(docs/numerics.md): scale the layer's weights or inputs by a power of two")
    return capped


def _encode_layer(W, n_pe, *, acc_depth, codebook, in_frac, out_frac, relu, name, seed, row_perm, col_perm,
                  bias=None, what=None) -> tuple[EncodedLayer, dict]:
    """encode_layer and its quantisation_report; `what` names the weights in errors."""
    what = what or name
    W = check_weights(W, what)
    b = check_bias(bias, W.shape[0], f"{what}: bias")
    in_frac = nm.check_frac(in_frac, f"{name}: in_frac")
    if b is not None:
        nm.check_bias_in_frac(in_frac, name)
    row_perm = check_permutation(row_perm, W.shape[0], f"{name}: row_perm")
    col_perm = check_permutation(col_perm, W.shape[1], f"{name}: col_perm")
    Wb = _with_bias(W, b)
    cbf = kmeans_codebook(Wb, seed=seed) if codebook is None else check_codebook(codebook, f"{name}: codebook")
    cbf = cbf.astype(np.float32).astype(np.float64)  # the image stores float32 centroids
    cb_int, w_frac = fixed_point_codebook(cbf)
    idx = assign_indices(Wb, cbf)
    report = quantisation_report(Wb, idx, cbf, cb_int, w_frac, what)
    if row_perm is not None:
        idx = idx[row_perm]
    if col_perm is not None:
        idx = np.concatenate([idx[:, :W.shape[1]][:, col_perm], idx[:, W.shape[1]:]], axis=1)
    ptr, v, z = encode_indices(idx, n_pe, acc_depth)
    asked = nm.check_frac(out_frac, f"{name}: out_frac")
    out_frac = writeback_format(asked, in_frac, w_frac, name)
    if out_frac > asked:  # |acc| < 2**47 steps: every output would round to 0 at the format asked for
        report = report | {"out_frac_raised_from": asked}
    return EncodedLayer(name=name, n_in=W.shape[1], n_out=W.shape[0], relu=relu,
                        in_frac=in_frac, w_frac=w_frac, out_frac=out_frac,
                        codebook=cb_int, codebook_float=cbf.astype(np.float32),
                        ptr=ptr, v=v, z=z, acc_depth=acc_depth, row_perm=row_perm, col_perm=col_perm,
                        bias=b is not None), report


def _calibrated_frac(x: np.ndarray, default: int, what: str) -> int:
    """The activation format that holds max |x| (choose_frac); `default` when x is all 0
    (nothing to fit); InputError when even the widest format saturates."""
    amax = float(np.abs(x).max())
    if amax == 0.0:
        return default
    if amax >= nm.MAX_MAGNITUDE:
        raise InputError(f"{what} reaches {amax:.6g}; {nm.magnitude_limit('activations')}")
    return nm.choose_frac(amax)


def _check_bias_input_format(in_frac: int, amax, what: str, origin: str, act: str) -> None:
    """A biased layer's input format (capped at MAX_BIAS_FRAC) must be allowed and must not
    quantise every calibrated input (largest |value| `amax`, or None) to 0 (InputError)."""
    if (msg := nm.bias_in_frac_problem(in_frac)):
        raise InputError(f"{what}{origin} sets its {msg}")
    if amax and np.floor(amax * nm.pow2(in_frac) + 0.5) == 0:
        raise InputError(f"{what}{origin}: {act} reaches only {amax:.3g}: its inputs would all quantise to 0 at "
                         f"in_frac = {in_frac} (at most {nm.MAX_BIAS_FRAC} with a bias; docs/numerics.md)")


def encode_network(weights: Sequence, n_pe: int, *, acc_depth: int = DEFAULT_ACC_DEPTH,
                   codebooks: Sequence | None = None, calibration=None,
                   act_frac: int = DEFAULT_ACT_FRAC, relu_last: bool = False,
                   names: Sequence[str] | None = None, seed: int = 0,
                   meta: dict | None = None, calibration_name: str = "calibration input",
                   balance=False, source: str | None = None, biases: Sequence | None = None,
                   act_frac_name: str = "act_frac") -> EIEImage:
    """Encode a stack of FC layers (ReLU between them) into one validated image.

    `biases`: None (no layer has one), or one entry per layer, None or a vector of n_out
    values (y = act(W a + b)); a layer's bias shares its codebook. The input format of a
    layer with a bias has 0..14 fractional bits (1.0 must be a 16-bit integer): a finer
    calibrated format is capped at 14, a coarser one (inputs of 2**15 or more) is refused.

    With a `calibration` input (float, (n_in,) or (batch, n_in)) each activation format
    gets the most fractional bits that hold the largest |value| seen in a float
    forward pass (through the weight-shared weights), any power of two from 2**-MIN_FRAC
    down to 2**-MAX_FRAC; otherwise all use `act_frac` (`act_frac_name` names it in errors).

    `balance`: False (default: row i on PE i mod N); True, or a balance.BalanceOptions,
    permutes every layer's output rows across PEs to balance their work
    (balance.balance_image; the calibration input, if any, gives the activation
    statistics). Outputs of the golden model stay in the weights' original order.

    `source` (e.g. the weights file) prefixes every error about a weight matrix. The
    image's meta gets "quantisation": each layer's quantisation_report.
    """
    check_pe_args(n_pe, acc_depth)

    if balance is True:
        balance = BalanceOptions()
    elif balance is False or balance is None:
        balance = None
    elif not isinstance(balance, BalanceOptions):
        raise InputError(f"balance must be True, False or a BalanceOptions, not {balance!r}")
    check_seed(seed)
    act_frac = nm.check_frac(act_frac, act_frac_name)
    keys = [f"W{i}" for i in range(len(weights))]
    whats = [f"{source}[{k}]" if source else k for k in keys]
    weights = [check_weights(W, what) for W, what in zip(weights, whats)]
    if not weights:
        raise InputError(f"{source}: no layers to encode" if source else "no layers to encode")
    for i in range(1, len(weights)):
        if weights[i].shape[1] != weights[i - 1].shape[0]:
            raise InputError(f"{whats[i]}: n_in = {weights[i].shape[1]} does not match {keys[i-1]}'s n_out = "
                             f"{weights[i - 1].shape[0]}")
    if codebooks is not None and len(codebooks) != len(weights):
        raise InputError(f"got {len(codebooks)} codebooks for {len(weights)} layers")
    if biases is not None and (isinstance(biases, np.ndarray) or len(biases) != len(weights)):
        raise InputError(f"biases: expected a list of one entry (None or a vector) per layer ({len(weights)}), "
                         f"got {_describe(biases)}")
    biases = [None] * len(weights) if biases is None else \
        [check_bias(b, W.shape[0], f"{source}[b{i}]" if source else f"b{i} (bias of layer {i})")
         for i, (b, W) in enumerate(zip(biases, weights))]
    names = list(names) if names is not None else [f"fc{i}" for i in range(len(weights))]
    cbs = [kmeans_codebook(_with_bias(W, biases[i]), seed=seed) if codebooks is None or codebooks[i] is None
           else check_codebook(codebooks[i], f"codebook of layer {i}") for i, W in enumerate(weights)]
    fracs = [act_frac] * (len(weights) + 1)
    amax = [None] * (len(weights) + 1)  # largest calibrated |activation| per format
    if calibration is not None:
        x = np.atleast_2d(real_array(calibration, calibration_name)).astype(np.float64)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[-1] != weights[0].shape[1] or not np.all(np.isfinite(x)):
            raise InputError(f"{calibration_name}: expected finite values of shape ({weights[0].shape[1]},) or "
                             f"(batch, {weights[0].shape[1]}) with batch >= 1, got {x.shape}")
        fracs[0], amax[0] = _calibrated_frac(x, act_frac, f"{calibration_name}: the input"), np.abs(x).max()
        with np.errstate(over="ignore", invalid="ignore"):
            for i, W in enumerate(weights):
                Wq = cbs[i][assign_indices(W, cbs[i])]
                x = x @ Wq.T
                if biases[i] is not None:
                    x = x + cbs[i][assign_indices(biases[i], cbs[i])]
                if i < len(weights) - 1 or relu_last:
                    x = np.maximum(x, 0)
                if not np.all(np.isfinite(x)):
                    raise InputError(f"{calibration_name}: the float forward pass overflows at layer {i}")
                fracs[i + 1] = _calibrated_frac(x, act_frac, f"{calibration_name}: the output of layer {i} ({names[i]})")
                amax[i + 1] = np.abs(x).max()
    fracs = [min(f, nm.MAX_BIAS_FRAC) if i < len(weights) and biases[i] is not None else f
             for i, f in enumerate(fracs)]
    for i, b in enumerate(biases):
        if b is not None:
            _check_bias_input_format(fracs[i], amax[i], f"{whats[i]}: ",
                                     calibration_name if calibration is not None else act_frac_name,
                                     "the input" if i == 0 else f"the output of layer {i - 1} ({names[i - 1]})")
    layers, reports = [], []
    for i, W in enumerate(weights):
        relu = i < len(weights) - 1 or relu_last
        layer, report = _encode_layer(W, n_pe, acc_depth=acc_depth, codebook=cbs[i], in_frac=fracs[i],
                                      out_frac=fracs[i + 1], relu=relu, name=names[i], seed=seed,
                                      row_perm=None, col_perm=None, bias=biases[i], what=whats[i])
        fracs[i + 1] = layer.out_frac  # may be capped so that the shift is >= 0
        layers.append(layer)
        reports.append({"layer": names[i], **report})
    image = EIEImage(n_pe=int(n_pe), acc_depth=int(acc_depth), layers=layers,
                     meta=dict(meta or {}) | {"quantisation": reports}).validate()
    if balance is not None:
        image = balance_image(image, calibration, options=balance)
    return image
