import itertools
import math

import pytest
import torch

from course_lib.locality import mean_attention_distance, patch_distances


def test_patch_distances_against_a_loop():
    K, p = 3, 4
    d = patch_distances(K, p)
    for (a, (i, j)), (b, (k, l)) in itertools.product(enumerate(itertools.product(range(K), range(K))), repeat=2):
        assert d[a, b].item() == pytest.approx(p * math.hypot(i - k, j - l))


def _with_cls(patch_attn: torch.Tensor) -> torch.Tensor:
    """Embed (B, H, n, n) patch attention into (B, H, n+1, n+1) with a class token that is ignored."""
    B, H, n, _ = patch_attn.shape
    a = torch.zeros(B, H, n + 1, n + 1)
    a[..., 0, :] = 1 / (n + 1)
    a[..., 1:, 1:] = patch_attn * 0.8
    a[..., 1:, 0] = 0.2                        # weight on the class token must not count
    return a


def test_known_cases():
    K = 4
    n = K * K
    ident = torch.eye(n).expand(2, 3, n, n)
    assert torch.allclose(mean_attention_distance([_with_cls(ident)], K, 4), torch.zeros(1, 3, dtype=torch.float64))
    right = torch.zeros(n, n)                  # every patch attends to its right neighbour (wrapping rows aside)
    for r in range(K):
        for c in range(K):
            right[r * K + c, r * K + (c + 1) % K] = 1.0
    expected = 4 * ((K - 1) * 1 + (K - 1)) / K       # (K-1) neighbours at 1 patch, one wrap at K-1 patches
    got = mean_attention_distance([_with_cls(right.expand(1, 1, n, n))], K, 4)
    assert got.item() == pytest.approx(expected)
    uniform = torch.full((1, 2, n, n), 1 / n)
    assert mean_attention_distance([_with_cls(uniform)], K, 1)[0, 0].item() == pytest.approx(
        patch_distances(K).mean().item())


def test_random_against_reference_and_errors():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 10, 10, generator=g).softmax(-1)    # 1 prefix token + 3x3 grid
    got = mean_attention_distance([a, a.flip(0)], 3, 2)
    d = patch_distances(3, 2)
    for h in range(3):
        vals = []
        for b in range(2):
            for q in range(9):
                w = a[b, h, 1 + q, 1:].double()
                vals.append(float((w / w.sum() * d[q]).sum()))
        assert got[0, h].item() == pytest.approx(sum(vals) / len(vals))
    assert got.shape == (2, 3)
    with pytest.raises(ValueError, match="expected"):
        mean_attention_distance([a], 4)
    with pytest.raises(TypeError, match="forward_with_attention"):
        mean_attention_distance(a, 3)


def test_bad_grid_and_non_finite_attention_are_refused():
    a = torch.rand(1, 2, 10, 10, generator=torch.Generator().manual_seed(1)).softmax(-1)
    for grid in (0, -3, 2.5):
        with pytest.raises(ValueError, match="grid_size must be a whole number"):
            mean_attention_distance([a], grid)
    with pytest.raises(ValueError, match="patch_size must be a positive"):
        mean_attention_distance([a], 3, patch_size=0)
    for bad in (float("nan"), float("inf")):
        b = a.clone()
        b[0, 1, 4, 2] = bad
        with pytest.raises(ValueError, match=r"attentions\[1\] holds NaN or infinite"):
            mean_attention_distance([a, b], 3)


# ----------------------------------------------------------------------------------------------------------------
# The positive control: attention local by construction is measured as local, uniform attention is not

def _small_vit():
    from course_lib.models import ViT

    torch.manual_seed(0)
    return ViT(img_size=32, patch_size=4, dim=48, depth=3, heads=4).eval()


def _verdict(model, images, uniform):
    from course_lib import internals

    with torch.no_grad():
        _, attentions = model.forward_with_attention(images)
    distances = mean_attention_distance(attentions, model.grid_size, model.patch_size)
    return distances, internals.locality_verdict(distances, uniform, "model")


def test_the_control_is_local_and_uniform_attention_is_not():
    from course_lib.locality import with_distance_bias

    model, images = _small_vit(), torch.randn(3, 3, 32, 32)
    uniform = patch_distances(8, 4).mean().item()
    distances, verdict = _verdict(with_distance_bias(model, sigma=1.0), images, uniform)
    assert verdict.startswith("model: 4 of 4 heads in blocks 1-1 attend locally"), verdict
    assert (distances < 0.8 * uniform).all()               # every head of every block, not only the lower third
    flat = with_distance_bias(model, sigma=1.0)            # the same control with attention that cannot prefer
    for block in flat.blocks:                              # anything: q = k = 0 and no bias, so uniform weights
        block.attn.inner.qkv.weight.data.zero_()
        block.attn.inner.qkv.bias.data.zero_()
        block.attn.bias.zero_()
    distances, verdict = _verdict(flat, images, uniform)
    assert verdict.startswith("model: 0 of 4 heads"), verdict
    torch.testing.assert_close(distances, torch.full_like(distances, uniform))


def test_the_control_without_bias_is_the_model_itself_and_leaves_it_unchanged():
    import math

    from course_lib.locality import gaussian_distance_bias, with_distance_bias

    model, images = _small_vit(), torch.randn(2, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        logits, attentions = model.forward_with_attention(images)
        logits_c, attentions_c = with_distance_bias(model, sigma=math.inf).forward_with_attention(images)
        biased = with_distance_bias(model, sigma=1.0)
        torch.testing.assert_close(biased(images), biased.forward_with_attention(images)[0])   # one function
    torch.testing.assert_close(logits_c, logits)
    for a, b in zip(attentions_c, attentions):
        torch.testing.assert_close(a, b)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    bias = gaussian_distance_bias(3, sigma=2.0)                           # (1 + 9, 1 + 9)
    assert bias[0].eq(0).all() and bias[:, 0].eq(0).all()                 # the class token is left alone
    assert bias[1, 1 + 8].item() == pytest.approx(-(2 * 2 + 2 * 2) / (2 * 2.0 ** 2))   # cells (0,0) and (2,2)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_distance_bias(3, sigma=0)
    with pytest.raises(TypeError, match="course ViT"):
        with_distance_bias(torch.nn.Linear(2, 2))
