"""Check functions for the exercises at the end of each notebook.

Each ``check_*`` calls the student's function on fresh random inputs, compares the answer with an independent
computation, prints what is right or wrong, and returns True/False. It never raises, so a notebook with an unsolved
exercise still runs from top to bottom; a function that returns ``None`` counts as "not attempted yet". An answer
that holds NaN or infinite values (which compare False with any tolerance), or is not the kind of value asked for
(a tensor of several numbers where one is asked for, a string), is wrong, with a message that says why.
"""
from __future__ import annotations

import functools
import math
import traceback
from typing import Callable

import torch

from .models import ViT, resnet18_cifar

__all__ = ["check_patchify", "check_unpatchify", "check_receptive_field", "check_rollout_step",
           "check_rollout_discard", "check_linear_cka", "check_hsic_unbiased", "check_rbf_cka",
           "check_drloc_targets", "check_signed_targets", "check_expected_target"]


def _run(fn: Callable, *args):
    """(result, None) or (None, error text) for a call to the student's function."""
    try:
        return fn(*args), None
    except SystemExit as error:   # exit() / sys.exit() in the answer: would end the checker (and a script) too
        return None, (f"SystemExit({error.code!r}): it called exit() or sys.exit(), which would stop the whole "
                      "notebook or script. Return the answer instead.")
    except Exception as error:  # noqa: BLE001 - report any error in the student's code
        return None, "".join(traceback.format_exception_only(type(error), error)).strip()


def _run_each(fn: Callable, inputs) -> tuple[dict, str | None]:
    """({input: result}, the first error text or None) for one call of the student's function per input."""
    results, first_error = {}, None
    for x in inputs:
        results[x], error = _run(fn, x)
        first_error = first_error or error
    return results, first_error


def _verdict(name: str, result, error: str | None, compare: Callable[[object], str | None]) -> bool:
    """Print the verdict on ``result`` and return True only for a correct answer; never raises."""
    if error is not None:
        print(f"✗ {name}: your function raised {error}")
        return False
    if result is None:
        print(f"… {name}: not attempted yet (the function returned None). Fill it in and run this cell again.")
        return False
    try:
        problem = compare(result)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - an answer of an unexpected kind is wrong
        problem = (f"your answer could not be checked ({type(error).__name__}: {error}). Return the kind of value "
                   "the exercise asks for.")
    if problem:
        hint = f" {_NAN_HINT}" if "NaN or infinite" in problem else ""
        print(f"✗ {name}: {problem}{hint}")
        return False
    print(f"✓ {name}: correct!")
    return True


_NAN_HINT = ("Look for a division by zero (e.g. a norm or a sum that is 0), or a square root or log of a number "
             "<= 0.")


def _first_problem(problems: list[str]) -> str | None:
    """The first of several answers' problems, and how many more inputs had one (None if there were none)."""
    if not problems:
        return None
    more = f" (and {len(problems) - 1} other input(s) like it)" if len(problems) > 1 else ""
    return problems[0] + more


def _non_finite(values: torch.Tensor, what: str) -> str | None:
    """A message when ``values`` holds NaN or infinite entries (NaN compares False with any tolerance)."""
    bad = int((~torch.isfinite(values)).sum()) if values.is_floating_point() else 0
    if not bad:
        return None
    return f"the {what} holds NaN or infinite values ({bad} of {values.numel()} entries), so it cannot be right."


def _close(got, expected: torch.Tensor, atol: float = 1e-5, what: str = "result") -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor, got {type(got).__name__}."
    if tuple(got.shape) != tuple(expected.shape):
        return f"the {what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}."
    got = got.detach().cpu().double()
    problem = _non_finite(got, what)
    if problem:
        return problem
    err = (got - expected.double()).abs().max().item()
    if err > atol:
        return f"the {what} differs from the expected values by up to {err:.3g} (tolerance {atol:g})."
    return None


def _scalar(got, what: str) -> tuple[float | None, str | None]:
    """(the answer as one float, None), or (None, why it is not one finite number)."""
    if got is None:
        return None, f"the {what} is None: the function returned nothing for that input."
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            return None, f"the {what} should be one number, got a tensor of shape {tuple(got.shape)}."
        got = got.detach().cpu().double().reshape(())
    elif isinstance(got, (bool, str, bytes)) or not hasattr(got, "__float__"):
        return None, f"the {what} should be one number (a float or a 0-d tensor), got {type(got).__name__}."
    value = float(got)
    if not math.isfinite(value):
        return None, _non_finite(torch.tensor(value), what)
    return value, None


def _close_scalar(got, expected: torch.Tensor, atol: float, what: str) -> str | None:
    """:func:`_close` for an answer that must be one number."""
    value, problem = _scalar(got, what)
    return problem or _close(torch.tensor(value, dtype=torch.float64), expected.reshape(()), atol, what)


# --------------------------------------------------------------------------------------------------------------
# Chapter 1: patches

def check_patchify(fn: Callable) -> bool:
    """``fn(images (B, C, H, W), p) -> (B, N, C*p*p)``, compared through a ViT's own patch embedding."""
    g = torch.Generator().manual_seed(1)
    model = ViT(img_size=16, patch_size=4, dim=24, depth=1, heads=2)
    images = torch.randn(3, 3, 16, 16, generator=g)
    result, error = _run(fn, images.clone(), 4)

    def compare(patches):
        expected_shape = (3, 16, 48)
        if not isinstance(patches, torch.Tensor) or tuple(patches.shape) != expected_shape:
            shape = tuple(patches.shape) if isinstance(patches, torch.Tensor) else type(patches).__name__
            return f"expected shape (B, N, C*p*p) = {expected_shape}, got {shape}."
        patches = patches.detach().cpu()
        if (problem := _non_finite(patches.double(), "patches")) is not None:
            return problem
        w = model.patch_embed.weight.detach().flatten(1)               # (D, C*p*p), flattened (C, p, p)
        embedded = patches.float() @ w.T + model.patch_embed.bias.detach()
        expected = model.patch_embed(images).detach().flatten(2).transpose(1, 2)
        if _close(embedded, expected, 1e-4) is None:
            return None
        return ("the patches are not in the right order: N must be row-major over the grid and each patch "
                "flattened as (channel, row, column), the order of a Conv2d kernel.")

    return _verdict("patchify", result, error, compare)


def check_unpatchify(fn: Callable) -> bool:
    """``fn(patches (B, N, C*p*p), p, H, W) -> (B, C, H, W)``: the images back from their patches, the inverse of
    the ViT's patch cut (N row-major over the grid, each patch flattened as (channel, row, column)). A non-square
    image catches H and W swapped."""
    g = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, 8, 12, generator=g)
    p, (B, C, H, W) = 4, images.shape
    grid = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)    # (B, rows, cols, C, p, p)
    patches = grid.reshape(B, (H // p) * (W // p), C * p * p)
    result, error = _run(fn, patches.clone(), p, H, W)

    def compare(got):
        problem = _close(got, images, 1e-6, "image batch")
        if problem is None or "shape" in problem or "NaN" in problem:
            return problem
        return ("the pixels are in the wrong places: patch n sits at grid row n // (W/p) and column n % (W/p), and "
                "its C*p*p values are (channel, row, column) in that order.")

    return _verdict("unpatchify", result, error, compare)


# --------------------------------------------------------------------------------------------------------------
# Chapter 3: receptive fields

@functools.lru_cache(maxsize=1)
def empirical_receptive_fields() -> dict[str, int]:
    """Side (pixels) of the input region that can influence the centre unit of each ResNet-18 stage's output,
    measured with gradients rather than a formula: what the receptive-field exercise is checked against."""
    torch.manual_seed(0)
    model = resnet18_cifar().eval()
    for m in model.modules():                     # positive weights: no accidental cancellation of gradients
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data.abs_()
    x = torch.ones(1, 3, 128, 128, requires_grad=True)   # large enough that no receptive field is clipped
    outputs = {"stem": model.stem(x)}
    h = outputs["stem"]
    for name in ["layer1", "layer2", "layer3", "layer4"]:
        h = outputs[name] = getattr(model, name)(h)
    fields = {}
    for name, out in outputs.items():
        c = out.shape[-1] // 2
        (grad,) = torch.autograd.grad(out[0, :, c, c].sum(), x, retain_graph=True)
        rows = (grad[0].abs().sum(0).sum(1) > 0).nonzero()
        fields[name] = int(rows.max() - rows.min() + 1)
    return fields


def check_receptive_field(fn: Callable) -> bool:
    """``fn(stage) -> int``: the receptive field (in pixels) of one unit at the output of a ResNet-18 stage."""
    stages = ["stem", "layer1", "layer2", "layer3", "layer4"]
    results, error = _run_each(fn, stages)
    if error is not None or all(v is None for v in results.values()):
        return _verdict("receptive field", None, error, lambda _: None)

    def compare(_):
        wrong, problems = [], []
        for s in stages:
            expected = empirical_receptive_fields()[s]
            value, problem = _scalar(results[s], f"receptive field of {s}")
            if problem:
                problems.append(problem)
            elif value != expected:
                wrong.append(f"{s}: you said {results[s]}, a gradient measurement says {expected}")
        return _first_problem(problems) or "; ".join(wrong) or None

    return _verdict("receptive field", results, None, compare)


# --------------------------------------------------------------------------------------------------------------
# Chapter 2: one step of attention rollout

def check_rollout_step(fn: Callable) -> bool:
    """``fn(attention (B, heads, T, T)) -> (B, T, T)``: average the heads, add the identity for the residual and
    re-normalise the rows (one factor of the rollout product)."""
    g = torch.Generator().manual_seed(2)
    attention = torch.rand(2, 3, 5, 5, generator=g).softmax(-1)
    result, error = _run(fn, attention.clone())
    fused = attention.double().mean(1)
    expected = fused + torch.eye(5, dtype=torch.float64)
    expected = expected / expected.sum(-1, keepdim=True)
    return _verdict("rollout step", result, error, lambda r: _close(r, expected, 1e-6))


DISCARD_RATIOS = (0.0, 0.5, 0.9)


def discard_inputs() -> list[torch.Tensor]:
    """The check's attentions: 3 blocks of (2 images, 3 heads, T, T) softmax weights, T = 1 + 3*3 tokens."""
    g = torch.Generator().manual_seed(15)
    return [(2 * torch.rand(2, 3, 10, 10, generator=g)).softmax(-1) for _ in range(3)]


def discard_reference(attentions, ratio: float, spare=lambda row, col: row == col == 0, per_row=False,
                      renormalise=True, spared_first=False) -> torch.Tensor:
    """Mean-fusion rollout with vit-explain's discard rule, written entry by entry: per image, the ``int(T*T*ratio)``
    smallest entries of the fused matrix are set to 0 unless ``spare(row, col)``. The other keyword arguments build
    the usual mistakes (``spared_first``: leave the spared entries out before counting the smallest ones)."""
    B, _, T, _ = attentions[0].shape
    R = torch.eye(T, dtype=torch.float64).repeat(B, 1, 1)
    for attention in attentions:
        A = attention.double().mean(1)
        for b in range(B):
            groups = [[(r, c) for c in range(T)] for r in range(T)] if per_row else [
                [(r, c) for r in range(T) for c in range(T)]]
            for cells in groups:
                count = int(len(cells) * ratio)
                ranked = sorted(cells, key=lambda rc: float(A[b, rc[0], rc[1]]))
                if spared_first:
                    ranked = [rc for rc in ranked if not spare(*rc)]
                for row, col in ranked[:count]:
                    if not spare(row, col):
                        A[b, row, col] = 0.0
        A = A + torch.eye(T, dtype=torch.float64)
        R = (A / A.sum(-1, keepdim=True) if renormalise else A) @ R
    return R


_DISCARD_MISTAKES = {
    "it zeroed (0, 0) too: spare the class token's attention to itself": dict(spare=lambda r, c: False),
    "it spared the whole class-token row and column: only entry (0, 0) is spared": dict(
        spare=lambda r, c: r == 0 or c == 0),
    "it chose the lowest entries of each row: the ratio applies to the whole T x T matrix": dict(per_row=True),
    "the rows do not sum to 1: renormalise each block's factor after adding the identity": dict(renormalise=False),
    "it zeroed one more entry where (0, 0) was among the lowest: find the int(T*T*ratio) lowest first, then spare "
    "(0, 0) among them": dict(spared_first=True),
}


def check_rollout_discard(fn: Callable) -> bool:
    """``fn(attentions: list of (B, heads, T, T), discard_ratio) -> (B, T, T)``: rollout with mean fusion and
    vit-explain's discard ratio (per image, the int(T*T*ratio) lowest entries of each fused matrix set to 0 before
    the identity is added, never entry (0, 0)), checked at ratios 0, 0.5 and 0.9 against an entry-by-entry
    reference; a known mistake is named."""
    attentions = discard_inputs()
    results, error = {}, None
    for ratio in DISCARD_RATIOS:
        results[ratio], problem = _run(fn, [a.clone() for a in attentions], ratio)
        error = error or problem
    if error is not None or all(v is None for v in results.values()):
        return _verdict("rollout with discarding", None, error, lambda _: None)

    def compare(_):
        for ratio, got in results.items():
            problem = _close(got, discard_reference(attentions, ratio), 1e-5, f"rollout at discard_ratio={ratio}")
            if problem is None:
                continue
            if "shape" in problem or "NaN" in problem or not isinstance(got, torch.Tensor):
                return problem
            for why, mistake in _DISCARD_MISTAKES.items():
                if _close(got, discard_reference(attentions, ratio, **mistake), 1e-5) is None:
                    return f"at discard_ratio={ratio}, {why}."
            if ratio > 0 and _close(got, discard_reference(attentions, 0.0), 1e-5) is None:
                return f"at discard_ratio={ratio} nothing was discarded: the ratio had no effect."
            return problem
        return None

    return _verdict("rollout with discarding", results, None, compare)


# --------------------------------------------------------------------------------------------------------------
# Chapter 4: CKA and HSIC

def _centre(K: torch.Tensor) -> torch.Tensor:
    n = K.shape[0]
    H = torch.eye(n, dtype=K.dtype) - 1.0 / n
    return H @ K @ H


def check_linear_cka(fn: Callable) -> bool:
    """``fn(X (n, p), Y (n, q)) -> float``: linear CKA, from the centred Gram matrices XXᵀ and YYᵀ."""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(40, 7, generator=g, dtype=torch.float64)
    Y = X @ torch.randn(7, 5, generator=g, dtype=torch.float64) + 0.5 * torch.randn(40, 5, generator=g,
                                                                                        dtype=torch.float64)
    result, error = _run(fn, X.clone(), Y.clone())
    Kc, Lc = _centre(X @ X.T), _centre(Y @ Y.T)
    expected = (Kc * Lc).sum() / ((Kc * Kc).sum().sqrt() * (Lc * Lc).sum().sqrt())
    return _verdict("linear CKA", result, error,
                    lambda r: _close_scalar(r, expected, 1e-6, "CKA"))


def check_hsic_unbiased(fn: Callable) -> bool:
    """``fn(K (n, n), L (n, n)) -> float``: the unbiased HSIC estimator of Song et al. (2012)."""
    g = torch.Generator().manual_seed(4)
    X = torch.randn(12, 4, generator=g, dtype=torch.float64)
    Y = torch.randn(12, 3, generator=g, dtype=torch.float64) + X[:, :3]
    K, L = X @ X.T, Y @ Y.T
    result, error = _run(fn, K.clone(), L.clone())
    n = K.shape[0]
    Kt, Lt = K - torch.diag(torch.diag(K)), L - torch.diag(torch.diag(L))
    one = torch.ones(n, dtype=torch.float64)
    expected = (torch.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * (one @ Kt @ Lt @ one)) / (n * (n - 3))
    return _verdict("unbiased HSIC", result, error,
                    lambda r: _close_scalar(r, expected, 1e-8, "HSIC"))


def check_rbf_cka(fn: Callable) -> bool:
    """``fn(X (n, p), Y (n, q), sigma) -> float``: CKA with RBF kernels K_ij = exp(-d_ij² / (2 s²)), d_ij the
    distance between inputs i and j, s² = sigma² × the median of all n² squared distances (Kornblith et al.'s
    reference code), the Gram matrices centred as for linear CKA."""
    g = torch.Generator().manual_seed(13)
    X = torch.randn(30, 6, generator=g, dtype=torch.float64)
    Y = torch.tanh(X @ torch.randn(6, 4, generator=g, dtype=torch.float64))
    result, error = _run(fn, X.clone(), Y.clone(), 0.8)

    def gram(Z):
        d2 = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)            # squared distances, (n, n)
        s2 = 0.8 ** 2 * _np_median(d2)                                    # (sigma x median distance)^2
        return _centre(torch.exp(-d2 / (2 * s2)))

    K, L = gram(X), gram(Y)
    expected = (K * L).sum() / ((K * K).sum().sqrt() * (L * L).sum().sqrt())
    return _verdict("RBF CKA", result, error, lambda r: _close_scalar(r, expected, 1e-8, "RBF CKA"))


def _np_median(values: torch.Tensor) -> float:
    """The median as NumPy defines it (the mean of the two middle values for an even count)."""
    v = values.flatten().sort().values
    n = len(v)
    return float(v[n // 2]) if n % 2 else float((v[n // 2 - 1] + v[n // 2]) / 2)


# --------------------------------------------------------------------------------------------------------------
# Chapter 5: DRLoc targets

def check_drloc_targets(fn: Callable) -> bool:
    """``fn(pos1 (B, m, 2), pos2 (B, m, 2), k) -> (B, m, 2)``: the targets (|i-p|/k, |j-h|/k)."""
    g = torch.Generator().manual_seed(5)
    k = 7
    pos1 = torch.randint(0, k, (3, 16, 2), generator=g)
    pos2 = torch.randint(0, k, (3, 16, 2), generator=g)
    result, error = _run(fn, pos1.clone(), pos2.clone(), k)
    expected = torch.empty(3, 16, 2, dtype=torch.float64)
    for b in range(3):
        for m in range(16):
            for axis in range(2):
                expected[b, m, axis] = abs(int(pos1[b, m, axis]) - int(pos2[b, m, axis])) / k

    def compare(r):
        problem = _close(r, expected, 1e-6, "targets")
        if problem and isinstance(r, torch.Tensor) and not r.is_floating_point():
            problem += " (integer division? convert to float before dividing by k)"
        return problem

    return _verdict("DRLoc targets", result, error, compare)


def check_signed_targets(fn: Callable) -> bool:
    """``fn(pos1 (B, m, 2), pos2 (B, m, 2), k) -> (B, m, 2)``: signed targets ((i-p) + (k-1)) / (2(k-1)) per axis,
    in [0, 1]: they keep which cell is left of / above the other, which |i-p|/k throws away."""
    g = torch.Generator().manual_seed(14)
    k = 6
    pos1 = torch.randint(0, k, (2, 12, 2), generator=g)
    pos2 = torch.randint(0, k, (2, 12, 2), generator=g)
    result, error = _run(fn, pos1.clone(), pos2.clone(), k)
    expected = torch.tensor([[[((int(a) - int(b)) + (k - 1)) / (2 * (k - 1)) for a, b in zip(p1, p2)]
                              for p1, p2 in zip(r1, r2)] for r1, r2 in zip(pos1, pos2)], dtype=torch.float64)
    return _verdict("signed DRLoc targets", result, error, lambda r: _close(r, expected, 1e-6, "targets"))


def check_expected_target(fn: Callable) -> bool:
    """``fn(k) -> float``: the expected DRLoc target E[|i-p|/k] for i, p independent and uniform on {0, ..., k-1},
    checked by enumerating all k*k pairs for several k."""
    results, error = _run_each(fn, (2, 3, 4, 8, 14))
    if error is not None or all(v is None for v in results.values()):
        return _verdict("expected target", None, error, lambda _: None)

    def compare(_):
        wrong, problems = [], []
        for k, got in results.items():
            grid = torch.arange(k, dtype=torch.float64)
            expected = ((grid[:, None] - grid[None, :]).abs() / k).mean().item()
            value, problem = _scalar(got, f"answer for k={k}")
            if problem:
                problems.append(problem)
            elif abs(value - expected) > 1e-6:        # float32 arithmetic is good to about 1e-7 here
                wrong.append(f"k={k}: you said {value:.9f}, enumerating all pairs gives {expected:.9f}")
        return _first_problem(problems) or "; ".join(wrong) or None

    return _verdict("expected target", results, None, compare)
