"""Translation augmentation of image training (`TrainConfig.shift`, `eie prune --shift`)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eie.cli import main
from eie.pruning.data import Splits
from eie.pruning.models import MLP
from eie.pruning.train import TrainConfig, random_shift, train

torch.set_num_threads(1)


def moved(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`img` moved down by dy and right by dx rows/columns, zeros shifted in (written out
    with slices, independently of random_shift's padding and gather)."""
    h, w = img.shape
    out = np.zeros_like(img)
    out[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = img[max(0, -dy):h - max(0, dy),
                                                                   max(0, -dx):w - max(0, dx)]
    return out


def offsets_of(src: np.ndarray, got: np.ndarray, shift: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)
            if np.array_equal(moved(src, dy, dx), got)]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(1, 3), st.integers(5, 10), st.integers(5, 10), st.integers(1, 12), st.integers(0, 2**31))
def test_each_image_is_moved_by_one_offset_in_range(shift, h, w, batch, seed):
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.uniform(0.1, 1.0, (batch, h * w)).astype(np.float32))  # no zero pixel: offsets unique
    got = random_shift(x, (h, w), shift, torch.Generator().manual_seed(seed)).numpy()
    assert got.shape == (batch, h * w)
    for src, out in zip(x.numpy(), got):
        assert len(offsets_of(src.reshape(h, w), out.reshape(h, w), shift)) == 1


def test_offsets_cover_the_range_and_follow_the_generator():
    x = torch.rand(400, 36) + 0.1
    a = random_shift(x, (6, 6), 2, torch.Generator().manual_seed(3))
    b = random_shift(x, (6, 6), 2, torch.Generator().manual_seed(3))
    c = random_shift(x, (6, 6), 2, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    seen = {offsets_of(s.reshape(6, 6), o.reshape(6, 6), 2)[0] for s, o in zip(x.numpy(), a.numpy())}
    assert seen == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}   # all 25 offsets, 400 draws


def tiny_splits(image_shape):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 16)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    return Splits("tiny", x, y, x[:8], y[:8], x[:8], y[:8], image_shape)


def test_training_sees_moved_images_and_shift_zero_the_originals(monkeypatch):
    """shift 0 feeds the training images as they are; shift 2 feeds each batch moved."""
    fed = []
    model = MLP((16, 8, 3))
    original_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda xb: fed.append(xb.detach().clone()) or original_forward(xb))
    splits = tiny_splits((4, 4))
    rows = {tuple(r) for r in splits.x_train.tolist()}
    for shift in (0, 2):
        fed.clear()
        train(model, splits, TrainConfig(epochs=1, batch_size=16, shift=shift))
        batch_rows = [tuple(r) for b in fed for r in b.tolist()]
        unchanged = sum(r in rows for r in batch_rows)
        assert len(batch_rows) == 64
        if shift == 0:
            assert unchanged == 64
        else:
            assert unchanged < 64 // 2    # 1 offset in 25 is (0, 0)


def test_shift_needs_image_data_and_a_range():
    with pytest.raises(ValueError, match="shift needs image data"):
        train(MLP((16, 8, 3)), tiny_splits(None), TrainConfig(epochs=1, shift=1))
    with pytest.raises(ValueError, match="shift must be 0 to 8"):
        TrainConfig(shift=9)


@pytest.mark.parametrize("argv, message", [
    (["--shift", "9"], "--shift: expected an integer in 0..8, got 9"),
    (["--shift", "-1"], "--shift: expected an integer in 0..8, got -1"),
    (["--dataset", "mnist1d", "--shift", "1"], "--shift: moves image pixels, and mnist1d has 1-D samples"),
])
def test_a_bad_shift_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        rc = main(["prune", "iterative", "--out", str(out), *argv])
        raise SystemExit(rc)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
