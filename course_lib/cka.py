"""Centred kernel alignment (CKA, Kornblith et al. 2019) between layers' representations of the same n images.

A layer gives features X (n, p), another layer (maybe of another model) Y (n, q); CKA compares their n x n
similarity structures K = k(X, X) and L = k(Y, Y), so p and q may differ:

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))          in [0, 1] for the biased estimator

with the biased HSIC (Gretton et al. 2005) or the unbiased HSIC₁ (Song et al. 2012); their scale cancels. Minibatch
CKA (Nguyen, Raghu & Kornblith 2021: :class:`MinibatchCKA`, :func:`cka_matrix`) averages HSIC₁ over minibatches,
then takes the ratio: unbiased, so independent of the batch size, with only (batch x batch) Grams in memory.

Features (n, C, H, W) or tokens (n, T, D) are flattened to (n, -1) and centred (each feature minus its mean over the
n images): no CKA value changes, but a large common offset can no longer swamp the differences between images in
float64 rounding. Sums are in float64; results are float64 tensors. Constant features (no similarity structure) and
NaN/infinite ones are refused with a ValueError naming the input.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, Mapping, Sequence

import torch
import torch.nn as nn

from .hooks import ActivationRecorder, model_input_batches, resolve_layers
from .models.common import check_whole
from .runtime import eval_mode

if TYPE_CHECKING:     # names used only in annotations
    from .data import Preprocessing
    from .hooks import Layers

__all__ = ["gram_linear", "gram_rbf", "center_gram", "hsic_biased", "hsic_unbiased", "cka_from_grams", "linear_cka",
           "rbf_cka", "MinibatchCKA", "cka_matrix"]

KERNELS = ("linear", "rbf")
_BLOCK_ELEMENTS = 2 ** 21     # features x examples converted to float64 at a time (16 MB)


def gram_linear(x: torch.Tensor, name: str = "X") -> torch.Tensor:
    """Xc Xcᵀ of the centred features Xc = X - mean(X): (n, ...) -> float64 (n, n). ``name``: the input's name in
    the ValueError for constant or non-finite features."""
    x = _matrix(x, name)
    K = _linear_gram(x)
    _refuse_degenerate(_status(K, x), [name], len(x))
    return K


def _linear_gram(x: torch.Tensor) -> torch.Tensor:
    """Xc Xcᵀ in float64, a block of features at a time: each block (at most 16 MB in float64) is converted, centred
    and multiplied while it is in the CPU's cache, so the (n, p) features are read once, with no float64 copy of them
    all. (Smaller blocks fit a smaller cache but multiply the thread hand-offs, which a busy 2-core machine makes
    expensive; a GPU takes the whole matrix at once.)"""
    n, p = x.shape
    K = torch.zeros(n, n, dtype=torch.float64, device=x.device)
    blocks = 1 if x.is_cuda else -(-n * p // _BLOCK_ELEMENTS)
    for block in x.split(max(1, -(-p // blocks)), dim=1):
        xc = block.to(torch.float64, copy=True)
        xc -= xc.sum(dim=0) / n                   # centre each feature: exactly 0 for a constant float32 one
        K.addmm_(xc, xc.T)                        # K += Xc Xcᵀ over this block of features
    return K


def center_gram(K: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11ᵀ/n: subtract row and column means, add back the grand mean. (..., n, n) -> float64."""
    _check_square(K, "K")
    K = K.double()
    return K - K.mean(dim=-2, keepdim=True) - K.mean(dim=-1, keepdim=True) + K.mean(dim=(-2, -1), keepdim=True)


def hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC₁ (Song et al. 2012), a float64 scalar. With K̃, L̃ the Grams with zeroed diagonals::

        HSIC₁ = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3))

    Needs n >= 4; can be slightly negative for independent representations. Stacks K (a, n, n), L (b, n, n) give
    the (a, b) HSIC₁ of every pair, which is what :class:`MinibatchCKA` uses.
    """
    K, L, single = _stacks(K, L, min_n=4)                                    # (a, n, n), (b, n, n)
    n = K.shape[-1]
    K, L = _zero_diagonal(K), _zero_diagonal(L)
    trace = torch.inner(K.flatten(1), L.flatten(1))                          # tr(K̃L̃) = <vec K̃, vec L̃>
    sums = torch.outer(K.sum(dim=(1, 2)), L.sum(dim=(1, 2))) / ((n - 1) * (n - 2))
    cross = 2 / (n - 2) * torch.inner(K.sum(dim=2), L.sum(dim=2))           # 1ᵀK̃L̃1 = (K̃1)·(L̃1)
    hsic = (trace + sums - cross) / (n * (n - 3))                            # (a, b)
    return hsic[0, 0] if single else hsic


def hsic_biased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Biased HSIC (Gretton et al. 2005): tr(K H L H) / (n-1)², a float64 scalar (stacks as :func:`hsic_unbiased`)."""
    K, L, single = _stacks(K, L)
    n = K.shape[-1]
    hsic = torch.inner(center_gram(K).flatten(1), center_gram(L).flatten(1)) / (n - 1) ** 2   # tr(AB) = <A, B>
    return hsic[0, 0] if single else hsic


def cka_from_grams(K: torch.Tensor, L: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """CKA = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)) for two (n, n) Gram matrices of the same n examples.

    NaN or infinite entries, or a Gram with no similarity structure (HSIC(K, K) <= 0, e.g. all ones), raise a
    ValueError naming K or L: the ratio would be NaN or rounding noise."""
    _check_finite(K, "K"), _check_finite(L, "L")
    hsic = hsic_unbiased if unbiased else hsic_biased
    kk, ll = hsic(K, K), hsic(L, L)
    for value, G, name in ((kk, K, "K"), (ll, L, "L")):     # a structureless Gram's rounding: ~1e-16 of its size
        if not value > 1e-12 * G.double().square().sum() / G.shape[-1] ** 2:
            raise ValueError(f"{name} has no similarity structure (HSIC({name}, {name}) = 0, e.g. all entries equal: a "
                             "constant representation), so CKA is undefined. Check that the features vary.")
    return hsic(K, L) / torch.sqrt(kk * ll)


def linear_cka(X: torch.Tensor, Y: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """Linear CKA between features X (n, ...) and Y (n, ...), a float64 scalar (for many examples use
    :func:`cka_matrix` or :class:`MinibatchCKA`). X or Y constant or not finite: a ValueError naming which."""
    _check_same_n(X, Y)
    return cka_from_grams(gram_linear(X, "X"), gram_linear(Y, "Y"), unbiased)


# --------------------------------------------------------------------------------------------------------------
# The RBF kernel

def gram_rbf(x: torch.Tensor, sigma: float = 0.8, name: str = "X") -> torch.Tensor:
    """RBF-kernel Gram matrix exp(-‖x_i - x_j‖² / (2 σ_k²)): (n, ...) -> float64 (n, n).

    Bandwidth as in Kornblith et al.'s reference code: ``exp(-sq_distances / (2 * sigma**2 * median(sq_distances)))``
    with the median over all n² entries (the zero diagonal included), so σ_k = sigma × the median pairwise distance
    (the paper uses sigma = 0.2, 0.4, 0.8; ours 0.8), taken per Gram matrix (each layer, each batch).

    Raises:
        ValueError: ``sigma`` not positive, constant or non-finite features, or a median distance of 0.
    """
    _check_sigma(sigma)
    x = _matrix(x, name)
    dots = _linear_gram(x)                 # centred: the distances do not change, their float64 rounding does
    K, sq_median = _rbf(dots, sigma)
    _refuse_degenerate(_status(dots, x, sq_median), [name], len(x))
    return K


def rbf_cka(X: torch.Tensor, Y: torch.Tensor, sigma: float = 0.8, unbiased: bool = False) -> torch.Tensor:
    """RBF CKA with kernel width sigma × median pairwise distance (see :func:`gram_rbf`), a float64 scalar."""
    _check_same_n(X, Y)
    return cka_from_grams(gram_rbf(X, sigma, "X"), gram_rbf(Y, sigma, "Y"), unbiased)


def _rbf(dots: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(RBF Gram, median squared distance) from the Gram of the centred features; no check, no host sync."""
    sq_norms = dots.diagonal()
    sq_distances = (sq_norms[:, None] + sq_norms[None, :] - 2 * dots).clamp_min(0)   # clamp rounding below 0
    v, m = sq_distances.flatten().sort().values, sq_distances.numel()     # the median as NumPy defines it: the mean
    sq_median = v[m // 2] if m % 2 else 0.5 * (v[m // 2 - 1] + v[m // 2])  # of the middle two (torch: the lower)
    return torch.exp(-sq_distances / (2 * sigma ** 2 * sq_median)), sq_median


# --------------------------------------------------------------------------------------------------------------
# Minibatch CKA over many layer pairs

Activations = Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


class MinibatchCKA:
    """Accumulates the CKA matrix between ``num_layers_a`` layers and ``num_layers_b`` layers over minibatches.

    Per batch, each layer's Gram matrix is computed once (not once per pair), and the HSIC terms of all pairs come
    from the stacked Grams at once (:func:`hsic_unbiased` of two stacks: tr(K̃_i L̃_j) = <vec K̃_i, vec L̃_j> for
    all pairs is one matrix product): n_a + n_b Grams per batch instead of 2 · n_a · n_b.

    Args:
        num_layers_a: number of layers of representation A.
        num_layers_b: number of layers of B; None for a symmetric matrix A x A (then call ``update(acts_a)``).
        kernel: "linear" or "rbf" (bandwidth ``sigma`` × median distance within each batch; ``sigma`` > 0).
        unbiased: HSIC₁ (Nguyen et al.'s minibatch CKA, default) or the biased HSIC. Averaging the biased estimator
            over batches does NOT converge to the full-data value; keep unbiased=True for minibatches.

    Example::

        acc = MinibatchCKA(len(layers_a), len(layers_b))
        for x in batches:
            acc.update([acts_a[n] for n in layers_a], [acts_b[n] for n in layers_b])
        matrix = acc.compute()                       # (n_a, n_b) float64
    """

    def __init__(self, num_layers_a: int, num_layers_b: int | None = None, kernel: str = "linear",
                 sigma: float = 0.8, unbiased: bool = True):
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, not {kernel!r}.")
        if kernel == "rbf":
            _check_sigma(sigma)
        self.num_layers_a, self.num_layers_b, self.symmetric = num_layers_a, num_layers_b, num_layers_b is None
        self.kernel, self.sigma, self.unbiased = kernel, sigma, unbiased
        self.reset()

    def reset(self) -> None:
        self.hsic_ab = self.hsic_aa = self.hsic_bb = None     # running sums over batches (float64 tensors)
        self.num_batches = 0

    def update(self, acts_a: Activations, acts_b: Activations | None = None) -> None:
        """Add one batch: the activations (b, ...) of each layer of A (and of B) for the same b images.

        A list or a {name: activation} mapping (then errors name the layer). A layer whose activations are constant
        over the batch, or not finite, raises a ValueError naming it (``acts_a[i]`` or the layer's name), and the
        batch is not added.
        """
        labelled = self._batch(acts_a, acts_b)
        grams, status = self._grams([x for _, x in labelled])
        _refuse_degenerate(status, [label for label, _ in labelled], len(labelled[0][1]))
        self._add(grams)

    def compute(self) -> torch.Tensor:
        """The CKA matrix (n_a, n_b) (n_a, n_a when symmetric), float64 on the CPU: mean HSIC over batches, then the
        ratio. Entries of a layer whose mean HSIC with itself is not positive are NaN (HSIC₁ is an unbiased
        estimate and can dip below 0 for a layer with almost no structure seen in few, small batches)."""
        if self.num_batches == 0:
            raise RuntimeError("No batch yet: call update() at least once before compute().")
        ab, aa, bb = (t.cpu() / self.num_batches for t in (self.hsic_ab, self.hsic_aa, self.hsic_bb))
        return ab / torch.sqrt(aa[:, None] * bb[None, :])

    def add_unchecked(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Add one batch from each layer's activations (A's layers, then B's) with the checks deferred: returns the
        layers' status (layers, 2) for the caller to check once, after its loop (:func:`cka_matrix` does)."""
        grams, status = self._grams(xs)
        self._add(grams)
        return status

    def _grams(self, xs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per layer (b, ...) -> the stacked Grams (layers, b, b) and each layer's (layers, 2) status (see
        :func:`_status`), without a host sync: checking the status is the caller's."""
        grams, status = [], []
        for x in xs:
            x = x.detach().flatten(1)
            dots = _linear_gram(x)
            K, sq_median = _rbf(dots, self.sigma) if self.kernel == "rbf" else (dots, None)
            grams.append(K)
            status.append(_status(dots, x, sq_median))
        return torch.stack(grams), torch.stack(status)

    def _add(self, grams: torch.Tensor) -> None:
        """Add one batch's HSIC terms, from the Grams of A's layers then B's (layers, b, b): every pair, and each layer
        with itself. No check and no host sync: HSIC of stacks checks their shapes only."""
        hsic = hsic_unbiased if self.unbiased else hsic_biased
        Ka, Lb = grams[:self.num_layers_a], grams[self.num_layers_a:]
        ab = hsic(Ka, Ka if self.symmetric else Lb)
        aa = ab.diagonal() if self.symmetric else hsic(Ka, Ka).diagonal()
        self._accumulate(ab, aa, aa if self.symmetric else hsic(Lb, Lb).diagonal())

    def _accumulate(self, ab: torch.Tensor, aa: torch.Tensor, bb: torch.Tensor) -> None:
        """Add one batch's HSIC of every pair (n_a, n_b), of A's layers with themselves (n_a,), of B's (n_b,)."""
        if self.num_batches == 0:
            self.hsic_ab, self.hsic_aa, self.hsic_bb = ab, aa.clone(), bb.clone()
        else:
            self.hsic_ab, self.hsic_aa, self.hsic_bb = self.hsic_ab + ab, self.hsic_aa + aa, self.hsic_bb + bb
        self.num_batches += 1

    def _batch(self, acts_a: Activations, acts_b: Activations | None) -> list[tuple[str, torch.Tensor]]:
        """Check one batch's shapes; return [(label, activation)] of A's layers, then B's (none when symmetric)."""
        acts_a = _labelled(acts_a, "acts_a")
        if not acts_a:
            raise ValueError("update() needs the activations of at least one layer.")
        n = acts_a[0][1].shape[0]
        _check_batch(acts_a, self.num_layers_a, "acts_a", n)
        if self.symmetric and acts_b is not None:
            raise ValueError("This accumulator is symmetric (num_layers_b=None): call update(acts_a) only.")
        if not self.symmetric:
            if acts_b is None:
                raise ValueError(f"This accumulator compares two layer lists: call update(acts_a, acts_b) with "
                                 f"{self.num_layers_b} activations for B.")
            acts_b = _labelled(acts_b, "acts_b")
            _check_batch(acts_b, self.num_layers_b, "acts_b", n)
        if self.unbiased:
            _check_unbiased_n(n)
        return acts_a + (acts_b or [])


def _labelled(acts: Activations, which: str) -> list[tuple[str, torch.Tensor]]:
    """[(label, activation)]: "layer 'block3' of A" for a mapping (names known), else "acts_a[2]"."""
    if isinstance(acts, Mapping):
        return [(f"layer {name!r} of {which[-1].upper()}", x) for name, x in acts.items()]
    return [(f"{which}[{i}]", x) for i, x in enumerate(acts)]


def _check_batch(acts: list[tuple[str, torch.Tensor]], expected: int, which: str, n: int) -> None:
    if len(acts) != expected:
        raise ValueError(f"update() got {len(acts)} activations for {which}, but this accumulator was built for "
                         f"{expected} layers.")
    for label, x in acts:
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{label} must be a batch of activations (b, ...), got {shape}.")
        if x.shape[0] != n:
            raise ValueError(f"All activations of one batch must hold the same b examples: {label} has "
                             f"{x.shape[0]}, the first layer of A has {n}.")


# --------------------------------------------------------------------------------------------------------------
# Driver: two models, many images

def cka_matrix(model_a: nn.Module, model_b: nn.Module | None, data, layers_a: Layers | None = None,
               layers_b: Layers | None = None, batch_size: int = 100, device: str | torch.device | None = None,
               kernel: str = "linear", unbiased: bool = True, sigma: float = 0.8,
               preprocess: Preprocessing | None = None, verbose: bool = False) -> torch.Tensor:
    """Minibatch CKA between every layer of ``model_a`` and every layer of ``model_b`` on the same images.

    Each batch goes through each model once (eval mode, no gradients; once in all when ``model_b`` is None or
    ``model_a``, and the symmetric matrix with the same layers on both sides); forward hooks record the layers and a
    :class:`MinibatchCKA` accumulates. The arguments are checked once, up front; the activations' checks (constant
    or non-finite layers) are gathered on the device and read once, at the end: no batch waits for the host.

    Args:
        model_a, model_b: the models (already on ``device``).
        data: an ImageSet, uint8 images with ``preprocess``, float images that already are the models' input, or an
            iterable of batches such as a ``GPULoader`` with ``train=False`` (see
            :func:`course_lib.hooks.model_input_batches`).
        layers_a, layers_b: layer specifications (:func:`course_lib.hooks.resolve_layers`); None: the model's default
            layers (ViT: all blocks; ResNet: stem + 4 stages), or ``layers_a`` for ``layers_b`` with the same model.
        batch_size: images per batch for tensors and ImageSets (a loader decides its own); a whole number >= 1.
        device: where the images go; default: ``model_a``'s device.
        kernel, unbiased, sigma: see :class:`MinibatchCKA`.
        preprocess: the run's :class:`~course_lib.data.Preprocessing` (``run.preprocess``) for uint8 images;
            default for an ImageSet: its data set's standardisation (``course_lib.data.RAW``: raw [0, 1] pixels).
        verbose: print the number of batches and the time taken.

    Returns:
        float64 (n_a, n_b) CKA matrix on the CPU; row i is ``list(layers_a)[i]``, column j ``list(layers_b)[j]``.

    Raises:
        ValueError: uint8 images without preprocessing, raw 0..255 float pixels, a bad ``batch_size``, or a layer
            with constant or non-finite activations in a batch (named).
    """
    check_whole("cka_matrix", batch_size=batch_size)
    same = model_b is None or model_b is model_a
    model_b = model_a if same else model_b
    layers_a = resolve_layers(model_a, layers_a)
    layers_b = layers_a if same and layers_b is None else resolve_layers(model_b, layers_b)
    symmetric = same and list(layers_a.items()) == list(layers_b.items())
    device = torch.device(device) if device is not None else next(model_a.parameters()).device
    acc = MinibatchCKA(len(layers_a), None if symmetric else len(layers_b), kernel, sigma, unbiased)
    names = [("a", n) for n in layers_a] + ([] if symmetric else [("b", n) for n in layers_b])

    rec_a = ActivationRecorder(model_a, {**layers_a, **layers_b} if same else layers_a, flatten=True)
    rec_b = rec_a if same else ActivationRecorder(model_b, layers_b, flatten=True)
    status, sizes, start = [], [], time.perf_counter()
    with eval_mode(model_a, model_b), rec_a, (nullcontext() if same else rec_b):
        for x in model_input_batches(data, batch_size, device, preprocess, "cka_matrix"):
            model_a(x)
            if not same:
                model_b(x)
            recorded = {"a": rec_a.activations, "b": rec_b.activations}
            status.append(acc.add_unchecked([recorded[side][n] for side, n in names]))   # HSIC₁: >= 4 images
            sizes.append(len(x))
    labels = [f"layer {n!r} of {side.upper()}" for side, n in names]
    _refuse_degenerate(torch.stack(status), labels, sizes)             # the loop's checks: one host sync
    if verbose:
        print(f"CKA over {acc.num_batches} batches: {time.perf_counter() - start:.1f} s")
    return acc.compute()


# --------------------------------------------------------------------------------------------------------------
# Checks (the errors name the fix)

def _matrix(x, name: str) -> torch.Tensor:
    """(n, ...) activations -> (n, features), flattened (a view when it can be), not converted."""
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (n, features) (or (n, C, H, W) / (n, T, D), flattened), got "
                         f"{tuple(x.shape)}. For a single feature per example use {name}[:, None].")
    return x.detach().flatten(1)


def _status(dots: torch.Tensor, x: torch.Tensor, sq_median: torch.Tensor | None = None) -> torch.Tensor:
    """[trace(Xc Xcᵀ), median squared distance (RBF; else 1)] from the centred Gram ``dots`` of features x, on the
    device. The trace is 0 exactly when x is constant over its rows (the mean of n equal float32 values is exact in
    float64; of float64 values it may round, so those rows are compared directly), NaN or inf when x is not finite."""
    trace = dots.diagonal().sum()
    if x.dtype == torch.float64:
        trace = trace.masked_fill((x == x[:1]).all() & trace.isfinite(), 0.0)
    return torch.stack([trace, sq_median if sq_median is not None else torch.ones_like(trace)])


def _refuse_degenerate(status: torch.Tensor, labels: Sequence[str], n: int | Sequence[int]) -> None:
    """Raise for the first layer with constant or non-finite features, or (RBF) a zero median distance.

    ``status``: (..., layers, 2) [trace(Xc Xcᵀ), median squared distance (1 for the linear kernel)], for one batch
    or stacked over batches (then ``n`` lists each batch's size); read with one host sync."""
    trace, sq_median = status.reshape(-1, len(labels), 2).unbind(-1)
    bad = ~torch.isfinite(trace) | (trace == 0) | ~(sq_median > 0)
    if not bool(bad.any()):
        return
    batch, layer = bad.nonzero()[0].tolist()                       # the first batch with a bad layer, its first
    value, median = trace[batch, layer].item(), sq_median[batch, layer].item()
    label = labels[layer]
    if not math.isfinite(value):
        raise ValueError(f"{label} holds NaN or infinite values, so its CKA is undefined. They come from the model or "
                         "its input: check that the weights are finite (a diverged run) and run in float32.")
    if value == 0:
        n = n if isinstance(n, int) else n[batch]
        raise ValueError(f"{label} is constant: all {n} examples have the same features, so it has no "
                         "similarity structure and CKA is undefined. Leave this layer out, or check that the model "
                         "gets different inputs (and is not dead, e.g. zero weights).")
    raise ValueError(f"{label}: the median pairwise distance is 0 (more than half of the pairs of examples are "
                     f"identical, median {median}), so the RBF bandwidth is undefined. Use more distinct examples "
                     "or the linear kernel.")


def _stacks(K: torch.Tensor, L: torch.Tensor, min_n: int = 0) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Gram matrices (n, n) or stacks (a, n, n), (b, n, n) of the same n, checked (shapes only) and stacked."""
    _check_square(K, "K")
    _check_square(L, "L")
    _check_same_n(K, L, "K and L", dim=-1)
    if min_n:
        _check_unbiased_n(K.shape[-1])
    single = K.dim() == 2 and L.dim() == 2
    return (K[None] if K.dim() == 2 else K), (L[None] if L.dim() == 2 else L), single


def _check_square(G: torch.Tensor, name: str) -> None:
    if G.dim() not in (2, 3) or G.shape[-1] != G.shape[-2]:
        raise ValueError(f"{name} must be a square (n, n) Gram matrix (or a stack of them), got {tuple(G.shape)}. "
                         "Build one with gram_linear(X) or gram_rbf(X).")


def _zero_diagonal(K: torch.Tensor) -> torch.Tensor:
    K = K.to(torch.float64, copy=True)
    K.diagonal(dim1=-2, dim2=-1).zero_()
    return K


def _check_same_n(a: torch.Tensor, b: torch.Tensor, names: str = "X and Y", dim: int = 0) -> None:
    if a.shape[dim] != b.shape[dim]:
        raise ValueError(f"{names} must describe the same examples: got n = {a.shape[dim]} and {b.shape[dim]}. CKA "
                         "compares two representations of the SAME images, row i of each being image i.")


def _check_unbiased_n(n: int) -> None:
    if n < 4:
        raise ValueError(f"The unbiased HSIC needs at least 4 examples (its formula divides by n(n-3)), got n = {n}. "
                         "Use a larger batch, or unbiased=False.")


def _check_finite(K: torch.Tensor, name: str) -> None:
    if not torch.isfinite(K).all():
        raise ValueError(f"{name} holds NaN or infinite values. Build the Gram matrix from finite features with "
                         "gram_linear(X) or gram_rbf(X), which say which input is at fault.")


def _check_sigma(sigma: float) -> None:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number: the RBF kernel width as a fraction of the median distance "
                         f"between examples (0.2, 0.4 or 0.8 in Kornblith et al.), got {sigma!r}.")
