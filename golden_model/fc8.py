"""Reader for the authors' compressed AlexNet FC8 (4096 -> 1000, 64 PEs) reference data.

Files (raw little-endian, as the authors ship them; not in this repository): act.dat
(4096 float32), arithm.dat (16 float32, entry 0 = 0), ptr/ptrK.dat (int32 column
pointers: 4,098, columns 0-4095 the inputs and column 4096 the bias), spm/spmK.dat
(uint32 pairs (index, zeros before), per-column z). The entries go into an EIEImage
unchanged, so our decoder reads the authors' layout; `fc8_image(ref, bias=True)` keeps
the bias column (an EncodedLayer.bias), as the authors' published cycle counts do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import numerics as nm
from .encoder import writeback_format
from .errors import ImageFormatError
from .image import EIEImage, EncodedLayer

__all__ = ["FC8_N_IN", "FC8_N_OUT", "FC8_N_PE", "AUTHORS_CYCLES", "AUTHORS_CYCLES_WITH_BIAS", "find_fc8_dir", "FC8Reference",
           "load_fc8", "fc8_image"]

FC8_N_IN, FC8_N_OUT, FC8_N_PE = 4096, 1000, 64
# The authors' cycle simulator on this layer, by activation-queue depth (published with the data):
# their published figures include a 4,097th column, the bias (about 16 entries per PE).
AUTHORS_CYCLES_WITH_BIAS = {1: 10194, 2: 8827, 4: 8160, 8: 7896, 16: 7794}
# The same simulator on the 4,096 columns this project encodes (bias column left out),
# measured by running it beside the project: the figures to compare with.
AUTHORS_CYCLES = {1: 10178, 2: 8811, 4: 8144, 8: 7880, 16: 7779}
_REL = Path("shared") / "data" / "eie-alexnet-fc8"


def find_fc8_dir() -> Path | None:
    """$EIE_FC8_DIR, else ../shared/data/eie-alexnet-fc8 beside the project or the cwd."""
    env = os.environ.get("EIE_FC8_DIR")
    cands = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[1]
    cands += [repo.parent / _REL, Path.cwd().parent / _REL, Path.cwd() / _REL]
    for c in cands:
        if (c / "act.dat").is_file():
            return c
    return None


@dataclass
class FC8Reference:
    act: np.ndarray        # float32 (4096,)
    codebook: np.ndarray   # float32 (16,)
    ptr: np.ndarray        # int64 (64, 4097): the input columns' pointers
    v: np.ndarray          # uint8, all PEs concatenated (input columns)
    z: np.ndarray          # uint8
    source: Path
    bias_ptr: np.ndarray | None = None   # int64 (64, 4098) with the bias column, if the files have it
    bias_v: np.ndarray | None = None     # uint8, every PE's entries including the bias column's
    bias_z: np.ndarray | None = None

    def layout(self, bias: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ptr, v, z) of the 4,096 input columns, or with the bias column (4,097)."""
        if not bias:
            return self.ptr, self.v, self.z
        if self.bias_ptr is None:
            raise ImageFormatError(f"{self.source}: the pointer files have no bias column (4,098 pointers)")
        return self.bias_ptr, self.bias_v, self.bias_z


def _read(path: Path, dtype, count: int | None = None, at_least: int | None = None) -> np.ndarray:
    if not path.is_file():
        raise ImageFormatError(f"{path}: missing (expected the FC8 reference layout)")
    size = path.stat().st_size
    item = np.dtype(dtype).itemsize
    if size % item:
        raise ImageFormatError(f"{path}: {size} bytes is not a whole number of {np.dtype(dtype)} values")
    n = size // item
    if count is not None and n != count:
        raise ImageFormatError(f"{path}: expected {count} {np.dtype(dtype)} values, found {n}")
    if at_least is not None and n < at_least:
        raise ImageFormatError(f"{path}: truncated, expected at least {at_least} {np.dtype(dtype)} values, found {n}")
    return np.fromfile(path, dtype=dtype)


def load_fc8(directory=None) -> FC8Reference:
    d = Path(directory) if directory is not None else find_fc8_dir()
    if d is None:
        raise ImageFormatError("FC8 reference data not found: set EIE_FC8_DIR or place it at ../shared/data/eie-alexnet-fc8")
    act = _read(d / "act.dat", "<f4", count=FC8_N_IN)
    cb = _read(d / "arithm.dat", "<f4", count=nm.CODEBOOK_SIZE)
    for name, arr in (("act.dat", act), ("arithm.dat", cb)):
        if not np.all(np.isfinite(arr)):
            raise ImageFormatError(f"{d / name}: contains NaN or inf")
    ptrs, spms = [], []
    for k in range(FC8_N_PE):
        p = _read(d / "ptr" / f"ptr{k}.dat", "<i4", at_least=FC8_N_IN + 1)[: FC8_N_IN + 2].astype(np.int64)
        if p[0] != 0 or np.any(np.diff(p) < 0):
            raise ImageFormatError(f"{d}/ptr/ptr{k}.dat: pointers must start at 0 and never decrease")
        s = _read(d / "spm" / f"spm{k}.dat", "<u4", at_least=2 * int(p[FC8_N_IN]))
        if s.size and s[: 2 * int(p[FC8_N_IN])].max() > 15:
            e = int(np.argwhere(s.reshape(-1, 2) > 15)[0][0])
            raise ImageFormatError(f"{d}/spm/spm{k}.dat: entry {e} = {s.reshape(-1, 2)[e].tolist()} does not fit 4 bits")
        ptrs.append(p)
        spms.append(s)
    # the bias column: every PE's file has the 4,098th pointer and its entries, all 4-bit
    has_bias = all(len(p) == FC8_N_IN + 2 and s.size >= 2 * int(p[-1]) and
                   (int(p[-1]) == int(p[FC8_N_IN]) or s[: 2 * int(p[-1])].max() <= 15) for p, s in zip(ptrs, spms))

    def entries(cols: int):
        pairs = [s[: 2 * int(p[cols])].reshape(-1, 2) for p, s in zip(ptrs, spms)]
        return (np.stack([p[: cols + 1] for p in ptrs]), np.concatenate([e[:, 0] for e in pairs]).astype(np.uint8),
                np.concatenate([e[:, 1] for e in pairs]).astype(np.uint8))

    ptr, v, z = entries(FC8_N_IN)
    bias = entries(FC8_N_IN + 1) if has_bias else (None, None, None)
    return FC8Reference(act, cb, ptr, v, z, d, *bias)


def fc8_image(ref: FC8Reference, acc_depth: int = 64, bias: bool = False) -> EIEImage:
    """The reference layer as a validated EIEImage (logits: no ReLU); `bias`: with the
    authors' bias column (4,097 stored columns, activation 1.0).

    Formats: the most fractional bits that hold the largest activation, codebook value
    and float output (computed here from the float data) in 16 bits.
    """
    from .reference import float_reference  # local: avoids a cycle at import time

    in_frac = nm.choose_frac(np.abs(ref.act).max())
    if bias:
        in_frac = min(in_frac, nm.MAX_BIAS_FRAC)
    w_frac = nm.choose_frac(np.abs(ref.codebook).max())
    ptr, v, z = ref.layout(bias)
    layer = EncodedLayer(name="alexnet-fc8", n_in=FC8_N_IN, n_out=FC8_N_OUT, relu=False, in_frac=in_frac,
                         w_frac=w_frac, out_frac=0, codebook=nm.quantize(ref.codebook, w_frac).astype(np.int16),
                         codebook_float=ref.codebook.astype(np.float32), ptr=ptr.astype(np.uint32),
                         v=v, z=z, acc_depth=acc_depth, bias=bias)
    y = float_reference(EIEImage(n_pe=FC8_N_PE, acc_depth=acc_depth, layers=[layer]), ref.act)[-1]
    layer = replace(layer, out_frac=writeback_format(nm.choose_frac(np.abs(y).max()), in_frac, w_frac, layer.name))
    return EIEImage(n_pe=FC8_N_PE, acc_depth=acc_depth, layers=[layer],
                    meta={"source": str(ref.source), "network": "AlexNet", "layer": "fc8"},
                    source=str(ref.source)).validate()
