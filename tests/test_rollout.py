"""Attention rollout against a float64 NumPy loop implementation, hand-made cases, and its error messages."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.models import ViT, resnet18_cifar
from course_lib.rollout import (attention_rollout, model_rollout, raw_attention_maps, rollout_matrices,
                                rollout_per_block, upsample_map)

# What the refusal of images a model never saw says: the caller, the problem, the fix.
UINT8 = r"{caller} got (torch\.)?uint8 images.*run\.preprocess\(images\)"
RAW_PIXELS = r"{caller} got pixel values up to \d+: these are raw 0\.\.255 pixels.*run\.preprocess\(images\)"


# ---- an independent reference: loops, float64, the "A + I" form of the residual ------------------------------

def np_rollout(attentions, fusion="mean", discard=0.0, prefix=1, residual=True, cls_query=True, norm="max"):
    """Per-block cumulative maps (B, L, K, K), written with explicit loops."""
    atts = [a.double().numpy() for a in attentions]
    B, H, T, _ = atts[0].shape
    K = int(round((T - prefix) ** 0.5))
    out = np.zeros((B, len(atts), K, K))
    for b in range(B):
        R = np.eye(T)
        for l, att in enumerate(atts):
            a = np.zeros((T, T))
            for i in range(T):
                for j in range(T):
                    values = [att[b, h, i, j] for h in range(H)]
                    a[i, j] = {"mean": np.mean, "max": np.max, "min": np.min}[fusion](values)
            n_drop = int(T * T * discard)
            if n_drop:
                flat = a.flatten()
                for idx in np.argsort(flat)[:n_drop]:
                    if not (prefix and idx == 0):
                        flat[idx] = 0.0
                a = flat.reshape(T, T)
            if residual:
                a = a + np.eye(T)                         # A + I: the 0.5 factors cancel in the row normalisation
            a = a / a.sum(axis=1, keepdims=True)
            R = a @ R
            row = R[0, prefix:] if (cls_query and prefix) else R[prefix:, prefix:].mean(axis=0)
            if norm == "max":
                row = row / row.max()
            elif norm == "sum":
                row = row / row.sum()
            out[b, l] = row.reshape(K, K)
    return out


def random_attentions(B=2, H=3, T=17, L=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, T, generator=g).mul(2).softmax(dim=-1) for _ in range(L)]


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.6])
def test_matches_numpy_reference(fusion, discard):
    atts = random_attentions()
    got = rollout_per_block(atts, head_fusion=fusion, discard_ratio=discard)
    assert got.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(got.numpy(), np_rollout(atts, fusion, discard), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attention_rollout(atts, head_fusion=fusion, discard_ratio=discard), got[:, -1])


@pytest.mark.parametrize("norm", ["sum", "none"])
def test_normalisations_and_options(norm):
    atts = random_attentions(seed=1)
    np.testing.assert_allclose(rollout_per_block(atts, scale=norm).numpy(), np_rollout(atts, norm=norm),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rollout_per_block(atts, cls_query=False, scale=norm).numpy(),
                               np_rollout(atts, cls_query=False, norm=norm), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rollout_per_block(atts, residual=False, scale=norm).numpy(),
                               np_rollout(atts, residual=False, norm=norm), rtol=1e-5, atol=1e-7)
    if norm == "sum":
        torch.testing.assert_close(rollout_per_block(atts, scale="sum").sum(dim=(-2, -1)), torch.ones(2, 3))


def test_no_class_token_averages_patch_queries():
    atts = random_attentions(T=16, seed=2)            # 16 = 4 x 4 patches, no class token: inferred
    got = attention_rollout(atts, discard_ratio=0.3)
    np.testing.assert_allclose(got.numpy(), np_rollout(atts, discard=0.3, prefix=0)[:, -1], rtol=1e-5, atol=1e-6)


def test_identity_attention_gives_zero_map():
    # Every token attends only to itself: nothing flows from the patches to the class token, R = I, so the class
    # token's row is one-hot on itself and its patch entries are all 0 (a zero map stays zero when normalised).
    T = 1 + 9
    atts = [torch.eye(T).expand(1, 2, T, T)] * 4
    for norm in ("max", "sum", "none"):
        torch.testing.assert_close(attention_rollout(atts, scale=norm), torch.zeros(1, 3, 3))
    # Averaged over patch queries instead, each patch only sees itself: a uniform map, 1 everywhere after "max".
    torch.testing.assert_close(attention_rollout(atts, cls_query=False), torch.ones(1, 3, 3))


def test_uniform_attention_gives_uniform_map():
    # A = 11ᵀ/T in every block: (0.5 A + 0.5 I)^L = 0.5^L I + (1 - 0.5^L) A, so every patch gets (1 - 0.5^L)/T.
    T, L = 5, 3
    atts = [torch.full((2, 4, T, T), 1.0 / T)] * L
    torch.testing.assert_close(attention_rollout(atts, scale="none"), torch.full((2, 2, 2), (1 - 0.5 ** L) / T))
    torch.testing.assert_close(attention_rollout(atts, scale="sum"), torch.full((2, 2, 2), 0.25))
    torch.testing.assert_close(attention_rollout(atts), torch.ones(2, 2, 2))


def test_discard_ratio_hand_made():
    # T = 5 (class token + 2x2). int(25 * 0.2) = 5 lowest entries: (0,0)=.01, (0,3)=.02, (1,0)=.03, (2,0)=.04,
    # (3,1)=.045. (0,0) is the class token's attention to itself and is kept; the other four become 0.
    a = torch.tensor([[0.01, 0.50, 0.30, 0.02, 0.17],
                      [0.03, 0.40, 0.25, 0.22, 0.10],
                      [0.04, 0.16, 0.35, 0.30, 0.15],
                      [0.20, 0.045, 0.255, 0.30, 0.20],
                      [0.10, 0.20, 0.30, 0.25, 0.15]], dtype=torch.float64)
    atts = [a.expand(1, 1, 5, 5)]
    kept_row0 = torch.tensor([0.01, 0.50, 0.30, 0.0, 0.17], dtype=torch.float64)   # sums to 0.98
    got = attention_rollout(atts, discard_ratio=0.2, residual=False, scale="none")
    torch.testing.assert_close(got.double().flatten(), kept_row0[1:] / 0.98)
    got = attention_rollout(atts, discard_ratio=0.2, residual=True, scale="none")
    torch.testing.assert_close(got.double().flatten(), 0.5 * kept_row0[1:] / (0.5 * 0.98 + 0.5))
    # Discarding nothing keeps (0,3).
    got = attention_rollout(atts, discard_ratio=0.0, residual=False, scale="none")
    torch.testing.assert_close(got.double().flatten(), a[0, 1:])


def test_head_fusion_hand_made():
    rest = torch.full((4, 5), 0.2)
    h1 = torch.cat([torch.tensor([[0.1, 0.4, 0.2, 0.2, 0.1]]), rest])
    h2 = torch.cat([torch.tensor([[0.3, 0.1, 0.1, 0.3, 0.2]]), rest])
    atts = [torch.stack([h1, h2])[None]]                                         # (1, 2, 5, 5)
    expected = {"mean": torch.tensor([0.25, 0.15, 0.25, 0.15]),
                "max": torch.tensor([0.4, 0.2, 0.3, 0.2]) / 1.4,                   # fused row 0 sums to 1.4
                "min": torch.tensor([0.1, 0.1, 0.2, 0.1]) / 0.6}                   # ... and to 0.6
    for fusion, want in expected.items():
        got = attention_rollout(atts, head_fusion=fusion, residual=False, scale="none")
        torch.testing.assert_close(got.flatten(), want)
    raw = raw_attention_maps(atts, head_fusion="max", scale="none")
    torch.testing.assert_close(raw.flatten(), torch.tensor([0.4, 0.2, 0.3, 0.2]))  # raw: no row re-normalisation


def test_raw_maps_per_block():
    atts = random_attentions(seed=3)
    raw = raw_attention_maps(atts, scale="none")
    assert raw.shape == (2, 3, 4, 4)
    for l, a in enumerate(atts):
        np.testing.assert_allclose(raw[:, l].reshape(2, 16).numpy(), a.double().mean(1)[:, 0, 1:].numpy(), rtol=1e-6)


def test_batch_items_are_independent():
    atts = random_attentions(seed=4)
    both = attention_rollout(atts, discard_ratio=0.5, head_fusion="max")
    second = attention_rollout([a[1:] for a in atts], discard_ratio=0.5, head_fusion="max")
    torch.testing.assert_close(both[1:], second)


def test_real_vit_end_to_end():
    torch.manual_seed(0)
    vit = ViT(depth=2, dim=32, heads=2).train()
    x = torch.randn(3, 3, 32, 32)
    maps = model_rollout(vit, x)
    assert maps.shape == (3, 8, 8) and vit.training                    # mode restored
    assert torch.allclose(maps.amax(dim=(1, 2)), torch.ones(3))
    with torch.no_grad():
        vit.eval()
        logits, atts = vit.forward_with_attention(x)
    np.testing.assert_allclose(maps.numpy(), np_rollout(atts)[:, -1], rtol=1e-5, atol=1e-6)
    assert model_rollout(vit, x, per_block=True, scale="sum").shape == (3, 2, 8, 8)

    no_cls = ViT(depth=2, dim=32, heads=2, class_token=False, pool="mean").eval()
    with torch.no_grad():
        _, atts = no_cls.forward_with_attention(x)
    np.testing.assert_allclose(model_rollout(no_cls, x).numpy(), np_rollout(atts, prefix=0)[:, -1], rtol=1e-5,
                               atol=1e-6)


def test_errors_name_the_fix():
    vit = ViT(depth=2, dim=32, heads=2).eval()
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(TypeError, match="forward_with_attention"):
        attention_rollout(vit(x))                                    # logits, no attention in them
    with torch.no_grad():
        out = vit.forward_with_attention(x)
    with pytest.raises(TypeError, match="only the attentions"):
        attention_rollout(out)
    with pytest.raises(TypeError, match="forward_with_attention"):
        attention_rollout([])
    atts = random_attentions(T=17)
    with pytest.raises(ValueError, match="differ across blocks"):
        attention_rollout([atts[0], random_attentions(T=10)[0]])
    with pytest.raises(ValueError, match="square grid"):
        attention_rollout(random_attentions(T=7))
    logits = [torch.randn(2, 3, 17, 17)] * 2
    with pytest.raises(ValueError, match="softmax"):
        attention_rollout(logits)
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(atts, head_fusion="median")
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="discard_ratio"):
            attention_rollout(atts, discard_ratio=bad)
    with pytest.raises(ValueError, match="scale"):
        attention_rollout(atts, scale="l2")
    with pytest.raises(ValueError, match=r"\(B, heads, T, T\)"):
        attention_rollout([atts[0][:, 0]])
    with pytest.raises(TypeError, match="no forward_with_attention"):
        model_rollout(resnet18_cifar(), x)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_attention_is_refused(bad):
    # NaN used to pass the softmax check (NaN compares False) and come out as NaN maps.
    atts = random_attentions()
    atts[1] = atts[1].clone()
    atts[1][0, 2, 5, 3] = bad
    for fn in (rollout_per_block, attention_rollout, raw_attention_maps):
        with pytest.raises(ValueError, match=r"attentions\[1\] holds NaN or infinite"):
            fn(atts)


def test_model_rollout_refuses_pixels_the_model_never_saw():
    vit = ViT(depth=2, dim=32, heads=2).train()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=UINT8.format(caller="model_rollout")):
        model_rollout(vit, images)
    with pytest.raises(ValueError, match=RAW_PIXELS.format(caller="model_rollout")):
        model_rollout(vit, images.float())
    assert vit.training
    model_rollout(vit, images.float() / 255)                     # [0, 1] pixels are a model input


def test_upsample_map():
    maps = torch.rand(2, 8, 8)
    assert upsample_map(maps).shape == (2, 32, 32)
    assert upsample_map(maps[0], 64).shape == (64, 64)
    assert upsample_map(torch.rand(2, 3, 8, 8)).shape == (2, 3, 32, 32)
    nearest = upsample_map(maps, 32, mode="nearest")
    torch.testing.assert_close(nearest[:, ::4, ::4], maps)                       # each patch becomes a 4x4 block
    torch.testing.assert_close(nearest[:, 3::4, 3::4], maps)
    torch.testing.assert_close(upsample_map(torch.full((1, 8, 8), 0.3)), torch.full((1, 32, 32), 0.3))
    up = upsample_map(maps)
    assert up.min() >= maps.min() - 1e-6 and up.max() <= maps.max() + 1e-6
    with pytest.raises(ValueError, match=r"\(B, K, K\)"):
        upsample_map(torch.rand(8))


def test_rollout_matrices_are_the_products_of_the_block_factors():
    atts = random_attentions(seed=5)
    flows = rollout_matrices(atts)
    factors = [rollout_matrices([a])[0] for a in atts]                    # each block's own factor
    for a, f in zip(atts, factors):
        fused = a.double().mean(1) + torch.eye(17, dtype=torch.float64)
        torch.testing.assert_close(f, fused / fused.sum(-1, keepdim=True))
    R = torch.eye(17, dtype=torch.float64)
    for f, flow in zip(factors, flows):
        R = f @ R
        torch.testing.assert_close(flow, R)
    maps = rollout_per_block(atts, scale="none")
    torch.testing.assert_close(maps[:, -1].double(), flows[-1][:, 0, 1:].reshape(2, 4, 4), rtol=1e-6, atol=1e-7)


def test_the_figure_and_the_explorer_use_the_library_rollout(monkeypatch):
    """No second copy of the algorithm: plots and widgets reach course_lib.rollout."""
    import matplotlib

    matplotlib.use("Agg")
    from course_lib.plots import diagrams

    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return rollout_matrices(*args, **kwargs)

    monkeypatch.setattr(diagrams, "rollout_matrices", counting)
    atts = [a[:1] for a in random_attentions(T=5)]                     # one image, a class token and 2x2 patches
    fig = diagrams.plot_rollout_product(atts)
    assert calls
    shown = torch.tensor(fig.axes[len(atts)].images[0].get_array())
    torch.testing.assert_close(shown, rollout_matrices(atts)[-1][0])
