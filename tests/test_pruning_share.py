"""Weight sharing (16 clusters, index 0 = 0), centroid finetuning, and the EIE export:
the image must decode to exactly the model's pruned, quantised weights."""

import numpy as np
import pytest
import torch

from eie.golden_model import decode_indices, decode_weights
from eie.golden_model import numerics as nm
from eie.golden_model.image_file import load_image, save_image
from eie.pruning.export import compression, export_image, image_accuracy, layer_codes
from eie.pruning.train import finetune
from eie.pruning.magnitude import prune_to
from eie.pruning.masks import clone_model, weight_of
from eie.pruning.models import MLP, build_model, strip_bias
from eie.pruning.pipeline import load_checkpoint, save_checkpoint
from eie.pruning.sharing import codebook_of, distinct_nonzero, is_shared, share_layer, share_weights, unshare
from eie.pruning.train import TrainConfig, accuracy, set_seed, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pruned(splits, train_mlp):
    m = train_mlp(8)
    prune_to(m, 0.9, scope="global")
    finetune(m, splits, TrainConfig(epochs=1), epochs=3, lr_scale=0.3)
    return m


def test_kmeans_sharing_16_entries_zero_reserved(pruned):
    m = clone_model(pruned)
    zeros = [(weight_of(l) == 0) for l in m.layers]
    dense_w = [weight_of(l).clone() for l in m.layers]
    codes = share_weights(m)
    for (name, (cb, idx)), l, z, w0 in zip(codes.items(), m.layers, zeros, dense_w):
        assert cb.shape == (16,) and cb.dtype == np.float32 and cb[0] == 0.0
        assert np.all(cb[1:] != 0)
        assert idx.dtype == np.uint8 and idx.max() <= 15
        np.testing.assert_array_equal(idx == 0, z.numpy())        # index 0 exactly at the pruned weights
        assert is_shared(l) and distinct_nonzero(l) <= 15
        w = l.weight.detach()
        assert torch.equal(w == 0, z)                               # zeros stay exactly zero
        np.testing.assert_array_equal(w.numpy(), cb[idx])           # weight = codebook[idx]
        # Each weight went to its nearest centroid.
        d = np.abs(w0.numpy()[..., None] - cb[None, None, 1:])
        nz = ~z.numpy()
        np.testing.assert_allclose(np.abs(w0.numpy() - w.numpy())[nz], d.min(-1)[nz], rtol=0, atol=1e-6)
    assert len({cb.tobytes() for cb, _ in codes.values()}) == 3    # one codebook per layer


def test_centroid_gradient_is_sum_of_member_gradients(pruned):
    """dL/dc_k = sum of dL/dW_ij over the weights and of dL/db_i over the biases with index k
    (the bias shares the layer's codebook, as EIE stores it)."""
    m = clone_model(pruned)
    cb, idx = share_layer(m.layers[1])
    bias_idx = m.layers[1].bias_idx.numpy()
    x = torch.rand(8, 64)
    # Reference: gradient w.r.t. the dense weight matrix and bias.
    ref = clone_model(m)
    unshare(ref)
    ref.layers[1].weight.requires_grad_(True)
    ref(x).square().sum().backward()
    g_w = ref.layers[1].weight.grad.numpy()
    g_b = ref.layers[1].bias.grad.numpy()
    m(x).square().sum().backward()
    g_c = m.layers[1].parametrizations.weight.original.grad.numpy()
    want = np.array([g_w[idx == k].sum() + g_b[bias_idx == k].sum() for k in range(1, 16)])
    assert np.count_nonzero(bias_idx) > 0
    np.testing.assert_allclose(g_c, want, rtol=1e-5, atol=1e-6)


def test_centroid_finetuning_keeps_sharing(pruned, splits):
    m = clone_model(pruned)
    before = share_weights(m)
    acc0 = accuracy(m, splits, "val")
    finetune(m, splits, TrainConfig(epochs=1), epochs=4, lr_scale=0.3)
    for (name, (cb0, idx0)), l in zip(before.items(), m.layers):
        cb, idx = codebook_of(l)
        np.testing.assert_array_equal(idx, idx0)                    # assignments fixed
        assert cb[0] == 0 and not np.array_equal(cb, cb0)           # centroids trained
        assert distinct_nonzero(l) <= 15
        np.testing.assert_array_equal(l.weight.detach().numpy(), cb[idx])
        assert torch.equal(l.weight.detach() == 0, torch.from_numpy(idx0 == 0))
    assert accuracy(m, splits, "val") >= acc0 - 0.02


@pytest.mark.parametrize("n_pe", [1, 3, 8])
@pytest.mark.parametrize("shared", [True, False])
def test_export_decodes_to_pruned_quantised_weights(pruned, splits, tmp_path, n_pe, shared):
    m = clone_model(pruned)
    if shared:
        share_weights(m)
        finetune(m, splits, TrainConfig(epochs=1), epochs=1, lr_scale=0.3)
        # Trained centroids need not stay sorted: reverse one layer's codebook (same weights);
        # the image must carry the model's codebook as it is, not a fresh k-means one.
        w = m.layers[0].weight.detach().clone()
        reverse_codebook(m.layers[0])
        assert torch.equal(m.layers[0].weight, w)
    image, check = export_image(m, splits.x_train[:64], n_pe, acc_depth=16 if n_pe == 3 else 64)
    assert check["decode_matches"] and check["biases_carried"]
    path = save_image(image, tmp_path / "m.eie")
    image = load_image(path)                                        # through the file format too
    for L, (_, l) in zip(image.layers, [(None, l) for l in m.layers]):
        cb, idx, _ = layer_codes(l)
        W = weight_of(l).double().numpy() if shared else cb.astype(np.float64)[idx]
        # Independent expectation: the float weight rounded to the layer's 16-bit codebook format.
        q = np.floor(W * 2.0 ** L.w_frac + 0.5) * 2.0 ** -L.w_frac
        np.testing.assert_array_equal(decode_weights(L), q)
        np.testing.assert_array_equal(decode_indices(L) == 0, W == 0)  # zero pattern = pruning mask
        assert np.abs(decode_weights(L) - W).max() <= 2.0 ** -(L.w_frac + 1)
        assert L.w_frac == nm.choose_frac(np.abs(cb).max(), nm.WEIGHT_BITS)
    if shared:
        cb = codebook_of(m.layers[0])[0]
        assert cb[1] > cb[15]  # descending now
        np.testing.assert_array_equal(image.layers[0].codebook_float, cb)
        np.testing.assert_array_equal(decode_indices(image.layers[0]), codebook_of(m.layers[0])[1])


def reverse_codebook(layer):
    par = layer.parametrizations.weight[0]
    with torch.no_grad():
        c = layer.parametrizations.weight.original
        c.copy_(c.flip(0))
        par.idx.copy_(torch.where(par.idx == 0, par.idx, 16 - par.idx))
        if hasattr(layer, "bias_idx"):                              # the shared bias uses the same codebook
            layer.bias_idx.copy_(torch.where(layer.bias_idx == 0, layer.bias_idx, 16 - layer.bias_idx))


def test_export_rejects_conv():
    set_seed(0)
    with pytest.raises(ValueError, match="only the MLP and LeNet-5"):
        export_image(build_model("conv", 64, 10, (8, 8)), np.zeros((1, 64)), 2)


def test_golden_model_matches_bias_free_model(splits):
    """Without biases the bit-exact EIE model agrees with the PyTorch model of the image."""
    set_seed(1)
    m = strip_bias(build_model("mlp", 64, 10))
    train(m, splits, TrainConfig(epochs=6))
    prune_to(m, 0.85, scope="global")
    share_weights(m)
    image, check = export_image(m, splits.x_train[:128], 4)
    assert check["decode_matches"] and not check["biases_carried"]
    x, y = splits.x_test[:120], splits.y_test[:120]
    g = image_accuracy(image, x, y)
    assert g["samples"] == 120 and g["cycles"] > 0
    with torch.no_grad():
        logits = m(torch.as_tensor(x)).numpy()
    from eie.golden_model.model import run_image

    out = run_image(image, x).outputs
    assert np.mean(out.argmax(1) == logits.argmax(1)) >= 0.97
    assert abs(g["accuracy"] - float(np.mean(logits.argmax(1) == y))) <= 0.03


def test_compression_bits_by_hand():
    W = np.zeros((4, 3))
    W[0, 0], W[2, 0], W[3, 2] = 0.5, -0.25, 0.125
    W1 = np.zeros((2, 4))
    W1[1, 3] = 1.0
    m = strip_bias(MLP((3, 4, 2)))          # by hand: no bias column
    with torch.no_grad():
        m.layers[0].weight.copy_(torch.as_tensor(W))
        m.layers[1].weight.copy_(torch.as_tensor(W1))
    image, check = export_image(m, np.ones((1, 3)), 2)
    assert check["decode_matches"]
    c = compression(image)
    L0, L1 = c["layers"]
    assert (L0["weights"], L0["nonzero"], L0["entries"], L0["pointers"]) == (12, 3, 3, 2 * 4)
    assert L0["dense_bits"] == 32 * 12 and L0["pruned_bits"] == 32 * 3
    assert L0["shared_bits"] == 4 * 3 + 16 * 16
    assert L0["csc_bits"] == 8 * 3 + 16 * 8 + 256
    assert L1["csc_bits"] == 8 * 1 + 16 * 2 * 5 + 256
    assert c["total"]["dense_bits"] == 32 * 20
    assert c["ratio_total"] == pytest.approx(32 * 20 / (L0["csc_bits"] + L1["csc_bits"]))
    # Long zero runs cost padding entries: 40 rows on 1 PE, one weight at the bottom.
    m2 = strip_bias(MLP((1, 40, 1)))
    with torch.no_grad():
        m2.layers[0].weight.zero_()
        m2.layers[0].weight[39, 0] = 1.0
        m2.layers[1].weight.fill_(1.0)
    image, _ = export_image(m2, np.ones((1, 1)), 1)
    L = compression(image)["layers"][0]
    assert (L["nonzero"], L["padding_entries"], L["entries"]) == (1, 2, 3)  # 39 zeros = 2 x 16 + 7
    # Huffman-coded: v = (0, 0, k) and z = (15, 15, 7) take 1 bit per entry, plus a 16 x 5-bit table each
    assert L["huffman_bits"] == (3 + 16 * 5) * 2 + 16 * L["pointers"] + 256


def test_checkpoint_round_trip_of_shared_model(pruned, tmp_path):
    m = clone_model(pruned)
    share_weights(m)
    x = torch.rand(4, 64)
    y = m(x).detach()
    p = save_checkpoint(m, tmp_path / "c.pt", {"method": "test"})
    assert is_shared(m.layers[0])                                   # saving works on a copy
    torch.testing.assert_close(m(x), y)
    loaded, obj = load_checkpoint(p)
    torch.testing.assert_close(loaded(x), y)
    assert obj["meta"] == {"method": "test"}
    cb, idx = codebook_of(m.layers[2])
    np.testing.assert_array_equal(obj["codebooks"]["layers.2"]["codebook"].numpy(), cb)
    np.testing.assert_array_equal(obj["codebooks"]["layers.2"]["idx"].numpy(), idx)
    with pytest.raises(ValueError, match="not an eie prune checkpoint"):
        torch.save({"x": 1}, tmp_path / "bad.pt")
        load_checkpoint(tmp_path / "bad.pt")
