"""Tests of course_lib.drloc: the sampling's distribution, the targets, the head's ability to learn, the wiring
into the models and fit(), and the error messages."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib.train import train_step
from course_lib.drloc import (DRLocHead, DRLocLoss, constant_baseline, drloc_forward, gather_pairs, official_drloc_weight,
                              relative_targets, sample_positions)
from course_lib.drloc import TARGET_MODES
from course_lib.drloc_variants import DRLocVariantLoss, cycle_back_regression
from conftest import tiny_vit
from course_lib.checkpoints import settings_text
from course_lib.models import HybridViT, ViT


pytestmark = pytest.mark.usefixtures("one_thread")      # conftest: tiny tensors run faster on one thread


def tiny_hybrid() -> HybridViT:
    return HybridViT(dim=16, depth=(1, 1), heads=(2, 2), mlp_ratio=1.0)


def distance_pmf(k: int) -> torch.Tensor:
    """P(|i - p| = d) for i, p independent and uniform on {0..k-1}: k/k^2 for d = 0, 2(k-d)/k^2 otherwise."""
    return torch.tensor([(k if d == 0 else 2 * (k - d)) / k**2 for d in range(k)], dtype=torch.float64)


# --------------------------------------------------------------------------------------------------------------
# Sampling and targets

@pytest.mark.parametrize("k", [2, 4, 8])
def test_targets_range_shape_dtype(k):
    g = torch.Generator().manual_seed(k)
    pos1, pos2 = sample_positions(64, 32, k, generator=g)
    assert pos1.shape == pos2.shape == (64, 32, 2) and pos1.dtype == torch.int64
    assert pos1.min() >= 0 and pos1.max() <= k - 1 and pos2.min() >= 0 and pos2.max() <= k - 1
    t = relative_targets(pos1, pos2, k)
    assert t.shape == (64, 32, 2) and t.dtype == torch.float32
    assert t.min() >= 0 and t.max() <= (k - 1) / k + 1e-7
    assert t.max() == pytest.approx((k - 1) / k)       # 2048 pairs: the farthest offset does come up


@pytest.mark.parametrize("k", [4, 8])
def test_sampled_distance_distribution_matches_theory(k):
    """Independent uniform draws with replacement: E[t_u] = (k^2 - 1) / (3 k^2) and P(d) = (k or 2(k-d)) / k^2.
    Sampling without replacement, or avoiding identical cells, fails both checks at this sample size."""
    g = torch.Generator().manual_seed(123)
    pos1, pos2 = sample_positions(2000, 100, k, generator=g)          # 200,000 pairs, two axes each
    t = relative_targets(pos1, pos2, k).double().flatten()
    expected_mean = (k**2 - 1) / (3 * k**2)
    standard_error = t.std().item() / math.sqrt(t.numel())
    assert abs(t.mean().item() - expected_mean) < 4 * standard_error

    d = (pos1 - pos2).abs().flatten()
    observed = torch.bincount(d, minlength=k).double()
    expected = distance_pmf(k) * d.numel()
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < 3 * (k - 1) + 20        # k-1 degrees of freedom: mean k-1, far tail below this bound

    # The cells themselves are uniform over the k*k grid, and a pair repeats a cell with probability 1/k^2.
    cells = torch.bincount((pos1[..., 0] * k + pos1[..., 1]).flatten(), minlength=k * k).double()
    expected_cells = torch.full_like(cells, cells.sum().item() / k**2)
    assert ((cells - expected_cells) ** 2 / expected_cells).sum().item() < 3 * (k * k - 1) + 20
    same = (pos1 == pos2).all(-1).double().mean().item()
    assert abs(same - 1 / k**2) < 4 * math.sqrt((1 / k**2) * (1 - 1 / k**2) / (2000 * 100))


def test_relative_targets_hand_computed():
    k = 4
    pos1 = torch.tensor([[[0, 3], [3, 0], [0, 0], [1, 2]]])
    pos2 = torch.tensor([[[2, 1], [3, 0], [3, 3], [2, 2]]])
    paper = torch.tensor([[[0.5, 0.5], [0.0, 0.0], [0.75, 0.75], [0.25, 0.0]]])
    torch.testing.assert_close(relative_targets(pos1, pos2, k), paper)
    torch.testing.assert_close(relative_targets(pos1, pos2, k, "paper"), paper)
    torch.testing.assert_close(relative_targets(pos1, pos2, k, "abs"), paper * 4)
    # signed: delta = pos1 - pos2 = (-2, 2), (0, 0), (-3, -3), (-1, 0), shifted by k - 1 = 3
    signed = torch.tensor([[[1.0, 5.0], [3.0, 3.0], [0.0, 0.0], [2.0, 3.0]]])
    torch.testing.assert_close(relative_targets(pos1, pos2, k, "signed"), signed)


def test_relative_targets_against_a_loop():
    k = 5
    g = torch.Generator().manual_seed(7)
    pos1, pos2 = sample_positions(3, 6, k, generator=g)
    formulas = {"paper": lambda a, b: abs(a - b) / k, "abs": lambda a, b: abs(a - b),
                "signed": lambda a, b: a - b + k - 1}
    assert set(formulas) == set(TARGET_MODES)
    for mode, formula in formulas.items():
        t = relative_targets(pos1, pos2, k, mode)
        for b in range(3):
            for n in range(6):
                for axis in range(2):
                    want = formula(int(pos1[b, n, axis]), int(pos2[b, n, axis]))
                    assert t[b, n, axis].item() == pytest.approx(want), (mode, b, n, axis)
    with pytest.raises(ValueError, match="Choose one of"):
        relative_targets(pos1, pos2, k, "relative")


def test_constant_baseline_by_enumeration():
    for k in (2, 4, 8):
        d = torch.arange(k)
        t = ((d[:, None] - d[None, :]).abs().double() / k).flatten()              # all k*k equally likely pairs
        assert constant_baseline(k) == pytest.approx((t - t.median()).abs().mean().item())
    assert constant_baseline(8) == pytest.approx(25 / 128)
    assert constant_baseline(8, "abs") == pytest.approx(25 / 16)              # the official targets, in cells
    with pytest.raises(ValueError, match="absolute targets"):
        constant_baseline(8, "signed")


def test_sampling_is_reproducible():
    a = sample_positions(8, 32, 8, generator=torch.Generator().manual_seed(0))
    b = sample_positions(8, 32, 8, generator=torch.Generator().manual_seed(0))
    c = sample_positions(8, 32, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])
    assert not torch.equal(a[0], a[1])                        # the two ends are separate draws
    torch.manual_seed(5)                                     # the global RNG, as fit seeds it per epoch
    d = sample_positions(8, 32, 8)
    torch.manual_seed(5)
    assert torch.equal(d[0], sample_positions(8, 32, 8)[0])


def test_gather_pairs_picks_the_right_cells():
    B, D, k, m = 3, 5, 4, 7
    grid = torch.randn(B, D, k, k)
    pos1, pos2 = sample_positions(B, m, k, generator=torch.Generator().manual_seed(2))
    e1, e2 = gather_pairs(grid, pos1, pos2)
    assert e1.shape == e2.shape == (B, m, D)
    for b in range(B):
        for n in range(m):
            assert torch.equal(e1[b, n], grid[b, :, pos1[b, n, 0], pos1[b, n, 1]])
            assert torch.equal(e2[b, n], grid[b, :, pos2[b, n, 0], pos2[b, n, 1]])


# --------------------------------------------------------------------------------------------------------------
# The head learns positions, and only positions

def position_grid(batch: int, k: int, projection: torch.Tensor) -> torch.Tensor:
    """Every image gets the same grid: cell (i, j) holds a fixed random projection of [one_hot(i), one_hot(j)]."""
    rows, cols = torch.arange(k).repeat_interleave(k), torch.arange(k).repeat(k)
    code = torch.cat([F.one_hot(rows, k), F.one_hot(cols, k)], dim=1).float()      # (k*k, 2k)
    return (code @ projection).T.reshape(1, -1, k, k).expand(batch, -1, -1, -1)     # (B, D, k, k)


@pytest.mark.parametrize("grid_kind", ["positions", "random"])
def test_head_learns_offsets_only_from_position_information(grid_kind):
    k, D, steps = 8, 32, 300
    g = torch.Generator().manual_seed(0)
    projection = torch.randn(2 * k, D, generator=g)
    make = (lambda B: position_grid(B, k, projection)) if grid_kind == "positions" else (
        lambda B: torch.randn(B, D, k, k, generator=g))     # fresh per image: says nothing about position
    torch.manual_seed(0)
    head = DRLocHead(D, hidden=128)                       # narrower than the paper's 512, to keep the test fast
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = drloc_forward(make(16), head, m=32, generator=g).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = torch.stack([drloc_forward(make(256), head, m=32, generator=g).loss for _ in range(4)]).mean().item()

    # The best constant under L1 is the median offset; its loss is what a head that cannot see positions reaches.
    pmf = distance_pmf(k)
    median = int(torch.searchsorted(pmf.cumsum(0), torch.tensor(0.5, dtype=torch.float64)))
    best_constant = sum(p * abs(d - median) for d, p in enumerate(pmf.tolist())) / k   # 0.195 for k = 8
    if grid_kind == "positions":
        assert final < 0.03, final
    else:
        assert 0.9 * best_constant < final < 1.15 * best_constant, (final, best_constant)


# --------------------------------------------------------------------------------------------------------------
# Wiring into the models and fit()

@pytest.mark.parametrize("make_model, dim, k", [(tiny_vit, 32, 8), (tiny_hybrid, 32, 4)])
def test_gradient_reaches_the_backbone(make_model, dim, k):
    torch.manual_seed(0)
    model = make_model()
    term = DRLocLoss(dim=dim)
    images = torch.randn(4, 3, 32, 32)
    value = term(model, model.forward_blocks(images), images, torch.zeros(4, dtype=torch.long))
    assert value.dim() == 0 and torch.isfinite(value) and value > 0
    assert term.last.pos1.max() == k - 1 and term.last.target.max() <= (k - 1) / k
    value.backward()
    for name, p in model.named_parameters():
        if name.startswith(("head.", "norm.")):
            assert p.grad is None, name      # the classifier and its final norm are not in DRLoc's graph
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad.abs().sum() > 0 for p in term.head.parameters())
    model.zero_grad()
    post = DRLocLoss(dim=dim, tokens="post_norm")
    post(model, model.forward_blocks(images), images, None).backward()
    assert model.norm.weight.grad.abs().sum() > 0           # read after the final norm, the norm is trained too


def test_fit_trains_the_head_with_the_model():
    from course_lib.data import load_dataset, subset
    from course_lib.train import fit

    train = subset(load_dataset("cifar10", "train", source="samples"), 3)
    test = subset(load_dataset("cifar10", "test", source="samples"), 1)
    torch.manual_seed(0)
    model = tiny_vit()
    term = DRLocLoss(dim=model.grid_dim, drloc_weight=0.5)
    before = [p.detach().clone() for p in term.head.parameters()]
    history = fit(model, train, test, epochs=1, extra_losses=[term], progress=False, device="cpu")
    assert len(history.extra["drloc"]) == 1
    assert 0 < history.extra["drloc"][0] < 1 and math.isfinite(history.test_acc[0])
    assert all(not torch.equal(a, b) for a, b in zip(before, term.head.parameters()))


@pytest.mark.parametrize("loss, target, classes", [("ce", "abs", 8), ("ce", "signed", 15), ("cbr", "abs", 8)])
def test_classification_variants(loss, target, classes):
    """The official code's other losses, which notebook 05 invites students to try (course_lib.drloc_variants)."""
    torch.manual_seed(0)
    model = tiny_vit()
    term = DRLocVariantLoss(dim=32, loss=loss, target=target, grid_size=8)
    images = torch.randn(2, 3, 32, 32)
    value = term(model, model.forward_blocks(images), images, None)
    assert term.last.pred.shape == (2, 64, classes, 2)
    if loss == "ce":      # a near-uniform head at init: about log(C) per axis
        assert value.item() == pytest.approx(2 * math.log(classes), rel=0.05)
    value.backward()
    assert model.patch_embed.weight.grad.abs().sum() > 0


def test_official_targets_in_cells_with_l1():
    term = DRLocLoss(dim=8, target="abs")                # the official runs: |delta| in cells
    term.grid_loss(torch.randn(64, 8, 4, 4))
    assert term.last.target.max() == 3 and term.last.target.dtype == torch.float32
    assert term.identity()["settings"]["target"] == "abs"


def test_cycle_back_regression_hand_computed():
    # Two classes, equal scores: mu = 0.5, var = 0.25, target 0 -> 0.25 / 0.25 + 1e-3 * log(0.25)
    value = cycle_back_regression(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    assert value.item() == pytest.approx(1 + 1e-3 * math.log(0.25), rel=1e-6)


def _weight_decay(init_weight, epoch, warmup_epochs=20, total_epoch=300):
    """The official main.py's schedule, transcribed as it is written there."""
    if epoch <= warmup_epochs:
        cur_weight = min(init_weight / warmup_epochs * epoch, init_weight)
    else:
        cur_weight = init_weight * (1.0 - (epoch - warmup_epochs) / (total_epoch - warmup_epochs))
    return cur_weight


def test_official_drloc_weight_schedule():
    for epoch, expected in [(0, 0.0), (10, 0.25), (20, 0.5), (100, 0.5 * (1 - 80 / 280)), (300, 0.0)]:
        assert official_drloc_weight(epoch, 0.5) == pytest.approx(expected)
        assert official_drloc_weight(epoch, 0.5) == pytest.approx(_weight_decay(0.5, epoch))
    # Over a 100-epoch run (epochs 0..99) the term follows main.py exactly; shorter runs follow it in proportion.
    term = DRLocLoss(dim=8, drloc_weight=0.5, schedule="official")
    assert [term.weight_at(e, 100) for e in (0, 10, 20, 99)] == pytest.approx(
        [_weight_decay(0.5, e) for e in (0, 10, 20, 99)])
    assert term.weight_at(99, 100) == pytest.approx(0.359, abs=1e-3)       # about 0.72 lambda at the end
    assert term.weight_at(5, 10) == pytest.approx(_weight_decay(0.5, 50))
    assert DRLocLoss(dim=8, drloc_weight=0.5).weight_at(3, 10) == 0.5


def test_fit_logs_the_scheduled_weight():
    from course_lib.data import load_dataset, subset
    from course_lib.train import fit

    train = subset(load_dataset("cifar10", "train", source="samples"), 2)
    term = DRLocLoss(dim=32, drloc_weight=1.0, m=4, schedule="official")
    h = fit(tiny_vit(), train, None, epochs=5, extra_losses=[term], progress=False, batch_size=20)
    assert h.extra_weight["drloc"] == pytest.approx([_weight_decay(1.0, e, 1, 15) for e in range(5)])


def by_hand_through_the_blocks(model, images):
    """The last block's tokens of a ViT, computed from its parts: patches, class token, position, blocks."""
    x = model.patch_embed(images).flatten(2).transpose(1, 2)
    x = torch.cat([model.cls_token.expand(len(x), -1, -1), x], dim=1) + model.pos_embed
    for block in model.blocks:
        x, _ = block(x)
    return x


def as_grid(tokens, k):
    """(B, 1 + k*k, D) -> the patch tokens on their grid (B, D, k, k), row-major, class token dropped."""
    return tokens[:, 1:].transpose(1, 2).reshape(len(tokens), -1, k, k)


@pytest.mark.parametrize("tokens", ["pre_norm", "post_norm"])
def test_the_tokens_drloc_reads_in_a_training_step_are_those_of_the_last_block_before_or_after_the_final_norm(
        tokens):
    """What DRLoc reads in train_step, against the ViT's parts computed by hand: the last block's tokens (pre_norm,
    where the official code reads them and the runs of record did), or the final LayerNorm of them (post_norm).
    Bit for bit: forward_features now includes the final norm, as timm's, and DRLoc must not have moved."""
    torch.manual_seed(0)
    model = tiny_vit().eval()                                  # no dropout: one pass equals another
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    term, seen = DRLocLoss(dim=32, m=4, tokens=tokens), []
    grid_loss = term.grid_loss
    term.grid_loss = lambda grid: seen.append(grid.detach().clone()) or grid_loss(grid)
    optimizer = torch.optim.SGD([*model.parameters(), *term.parameters()], lr=0.0)
    train_step(model, (images, labels, labels), optimizer, torch.amp.GradScaler("cpu", enabled=False),
               [(0.5, term)])
    with torch.no_grad():
        blocks = by_hand_through_the_blocks(model, images)
        if tokens == "post_norm":
            blocks = F.layer_norm(blocks, (32,), model.norm.weight, model.norm.bias, model.norm.eps)
    assert torch.equal(seen[0], as_grid(blocks, 8))


# --------------------------------------------------------------------------------------------------------------
# Errors that name the fix

def test_model_without_grid():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    images = torch.randn(2, 3, 32, 32)
    with pytest.raises(TypeError, match="exposes no token grid.*feature_grid"):
        DRLocLoss(dim=32)(model, model(images), images, None)


def test_grid_too_small():
    class OneCell(nn.Module):
        def feature_grid(self, features):
            return features.reshape(-1, 32, 1, 1)

    with pytest.raises(ValueError, match="nothing to localise"):
        DRLocLoss(dim=32)(OneCell(), torch.randn(2, 32), None, None)


def test_dim_mismatch_names_the_dim_to_pass():
    model = tiny_vit()
    images = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="dim=32"):
        DRLocLoss(dim=64)(model, model.forward_blocks(images), images, None)


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one pair"):
        DRLocLoss(dim=32, m=0)
    with pytest.raises(ValueError, match="at least one pair"):
        sample_positions(2, 0, 8)
    for bad in (dict(drloc_weight=float("nan")), dict(drloc_weight=-1.0), dict(m=2.5), dict(schedule="cosine"),
                dict(tokens="cls")):
        with pytest.raises(ValueError, match="weight|m=|schedule|tokens"):
            DRLocLoss(dim=32, **bad)
    with pytest.raises(ValueError, match="DRLocVariantLoss"):
        DRLocLoss(dim=32, loss="ce")
    with pytest.raises(ValueError, match="grid_size"):
        DRLocVariantLoss(dim=32, loss="ce")
    with pytest.raises(ValueError, match="'abs'"):
        DRLocVariantLoss(dim=32, loss="ce", target="paper", grid_size=8)
    with pytest.raises(ValueError, match="Choose one of"):
        DRLocVariantLoss(dim=32, loss="l2")
    term = DRLocVariantLoss(dim=32, loss="ce", grid_size=4)
    with pytest.raises(ValueError, match="grid_size=8"):
        term.grid_loss(torch.randn(2, 32, 8, 8))


def test_defaults_follow_the_paper_and_config():
    term = DRLocLoss(dim=8)
    assert (term.name, term.drloc_weight, term.m, term.loss, term.target) == ("drloc", 0.5, 64, "l1", "paper")
    assert (term.schedule, term.tokens) == ("constant", "pre_norm")
    assert [layer.out_features for layer in term.head.layers if isinstance(layer, nn.Linear)] == [512, 512, 2]
    assert term.head.layers[0].in_features == 16      # the concatenation [e1, e2]


# --------------------------------------------------------------------------------------------------------------
# Runs of record are identified by DRLocLoss.identity() and reproduced by its numerics: neither may drift.

RECORD_SETTINGS = {   # the settings course_lib.experiments uses (the ablation: lambda, m, schedule, tokens)
    "dim=192, weight=0.5, m=64, loss='l1', target='paper', hidden=512, schedule='constant', tokens='pre_norm'":
        dict(dim=192),
    "dim=192, weight=0.1, m=64, loss='l1', target='paper', hidden=512, schedule='constant', tokens='pre_norm'":
        dict(dim=192, drloc_weight=0.1),
    "dim=192, weight=1.0, m=64, loss='l1', target='paper', hidden=512, schedule='constant', tokens='pre_norm'":
        dict(dim=192, drloc_weight=1.0),
    "dim=192, weight=0.5, m=16, loss='l1', target='paper', hidden=512, schedule='constant', tokens='pre_norm'":
        dict(dim=192, m=16),
    "dim=192, weight=0.5, m=32, loss='l1', target='paper', hidden=512, schedule='constant', tokens='pre_norm'":
        dict(dim=192, m=32),
    "dim=192, weight=0.5, m=64, loss='l1', target='paper', hidden=512, schedule='official', tokens='pre_norm'":
        dict(dim=192, schedule="official"),
    "dim=192, weight=0.5, m=64, loss='l1', target='paper', hidden=512, schedule='constant', tokens='post_norm'":
        dict(dim=192, tokens="post_norm"),
    "dim=256, weight=0.1, m=16, loss='l1', target='paper', hidden=512, schedule='official', tokens='post_norm'":
        dict(dim=256, drloc_weight=0.1, m=16, schedule="official", tokens="post_norm"),
}


@pytest.mark.parametrize("settings", sorted(RECORD_SETTINGS))
def test_identity_of_the_record_settings_is_unchanged(settings):
    identity = DRLocLoss(**RECORD_SETTINGS[settings]).identity()
    assert identity["class"] == "DRLocLoss" and settings_text(identity["settings"]) == settings


def _reference_head(dim: int) -> nn.Sequential:
    """The head as it was built when the runs of record were made: layers created, then initialised, in this order."""
    layers = nn.Sequential(nn.Linear(2 * dim, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 2))
    for module in layers.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
    return layers


def _reference_term(head: nn.Module, m: int, grid: torch.Tensor, generator: torch.Generator | None) -> tuple:
    """The DRLoc term as it was computed for the runs of record: two randint draws, |delta| / k, one gather of both
    ends, float32 prediction, F.l1_loss."""
    B, D, k, _ = grid.shape
    pos1 = torch.randint(k, (B, m, 2), generator=generator)
    pos2 = torch.randint(k, (B, m, 2), generator=generator)
    target = (pos1 - pos2).float().abs() / k
    tokens = grid.flatten(2).transpose(1, 2)
    index = torch.cat([pos1, pos2], dim=1)
    index = index[..., 0] * k + index[..., 1]
    picked = tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, D))
    pred = head(torch.cat([picked[:, :m], picked[:, m:]], dim=-1)).float()
    return F.l1_loss(pred, target), pos1, pos2, target


@pytest.mark.parametrize("tokens", ["pre_norm", "post_norm"])
def test_numerics_are_those_of_the_runs_of_record(tokens):
    dim, m = 16, 8
    grid = torch.randn(3, dim, 4, 4, generator=torch.Generator().manual_seed(2), requires_grad=True)
    torch.manual_seed(0)
    head = _reference_head(dim)
    want, pos1, pos2, target = _reference_term(head, m, grid, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    term = DRLocLoss(dim=dim, m=m, tokens=tokens, generator=torch.Generator().manual_seed(1))
    got = term.grid_loss(grid)
    assert all(torch.equal(a, b) for a, b in zip(term.head.state_dict().values(), head.state_dict().values()))
    assert list(term.head.state_dict()) == [f"layers.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")]
    assert torch.equal(term.last.pos1, pos1) and torch.equal(term.last.pos2, pos2)
    assert torch.equal(term.last.target, target) and torch.equal(got, want)
    assert got.item() == pytest.approx(0.32867786288261414, rel=1e-6)     # the value on this machine when pinned
    grad, = torch.autograd.grad(got, grid)
    want_grad, = torch.autograd.grad(want, grid)
    assert torch.equal(grad, want_grad)


def test_global_rng_draws_are_those_of_the_runs_of_record():
    """fit seeds the global RNG per epoch and passes no generator: the pairs come from it, on the grid's device."""
    grid = torch.randn(2, 8, 4, 4, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    term = DRLocLoss(dim=8, m=5)
    torch.manual_seed(7)
    got = term.grid_loss(grid)
    torch.manual_seed(0)
    head = _reference_head(8)
    torch.manual_seed(7)
    want, pos1, pos2, _ = _reference_term(head, 5, grid, None)
    assert torch.equal(term.last.pos1, pos1) and torch.equal(term.last.pos2, pos2) and torch.equal(got, want)


def test_grid_is_checked_once_per_shape():
    term = DRLocLoss(dim=8, m=4)
    term.grid_loss(torch.randn(2, 8, 4, 4))
    term.grid_loss(torch.randn(3, 8, 4, 4))                      # another batch size: the same grid, checked already
    with pytest.raises(ValueError, match="dim=16"):
        term.grid_loss(torch.randn(2, 16, 4, 4))                 # a new shape is checked again


def test_an_absurd_number_of_pairs_is_refused_before_any_memory_is_taken():
    """m = 10**9 would ask randint for 16 GB per image at the first step; a float m was a raw TypeError."""
    from course_lib.drloc import MAX_PAIRS, DRLocLoss, sample_positions

    with pytest.raises(ValueError, match="at most 65,536"):
        DRLocLoss(dim=8, m=10**9)
    with pytest.raises(ValueError, match="whole number"):
        DRLocLoss(dim=8, m=1e9)
    with pytest.raises(ValueError, match="whole number"):
        sample_positions(2, 64.0, 8)
    assert DRLocLoss(dim=8, m=MAX_PAIRS).m == MAX_PAIRS
