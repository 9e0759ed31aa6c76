"""Centred kernel alignment (CKA) between layers' representations of the same images: Gram matrices, HSIC
estimators, single-pair CKA, the minibatch accumulator :class:`MinibatchCKA`, and :func:`cka_matrix` for two models.

For n images, a layer gives features X (n, p); another layer (maybe of another model) gives Y (n, q). CKA compares
the n x n similarity structures K = k(X, X) and L = k(Y, Y), so p and q may differ (Kornblith et al. 2019):

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))          in [0, 1] for the biased estimator

- Linear kernel K = X Xᵀ: biased linear CKA equals ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) for column-centred X, Y. It is
  invariant to orthogonal transforms and isotropic scaling of the features, not to arbitrary invertible maps.
- RBF kernel (:func:`gram_rbf`): Kornblith et al.'s reference code, bandwidth from the median distance.
- HSIC estimators: the biased one (Gretton et al. 2005) on centred Grams, ``tr(K H L H) / (n-1)²``; the unbiased
  one HSIC₁ (Song et al. 2012), which needs n > 3. The scale of HSIC cancels in the CKA ratio.
- Minibatch CKA (Nguyen, Raghu & Kornblith 2021), :class:`MinibatchCKA`: average HSIC₁(K, L), HSIC₁(K, K),
  HSIC₁(L, L) over minibatches, then take the ratio. HSIC₁ is unbiased, so each average is an unbiased estimate of
  the population HSIC and the result does not depend on the batch size the way the biased estimator would; it lets
  CKA run over thousands of images with only (batch x batch) Grams in memory.

Conventions: features (n, C, H, W) or tokens (n, T, D) are flattened to (n, -1) (every position and channel is one
feature). Gram matrices are built from centred features (each feature's mean over the n examples subtracted): CKA
does not change, but a large common offset (activations around 1e4, say) no longer swamps the differences between
examples in float64 rounding. Constant features (every example the same: no similarity structure to compare) and
NaN/infinite features are refused with a ValueError naming the input. All sums are in float64. Results are float64
tensors.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import torch
import torch.nn as nn

from .data import ImageSet, Preprocessing
from .hooks import ActivationRecorder, check_pixels, resolve_layers
from .models.common import check_whole
from .runtime import eval_mode

if TYPE_CHECKING:     # names used only in annotations
    from .hooks import Layers

__all__ = ["as_features", "gram_linear", "gram_rbf", "center_gram", "hsic_biased", "hsic_unbiased",
           "cka_from_grams", "linear_cka", "rbf_cka", "MinibatchCKA", "cka_matrix"]

KERNELS = ("linear", "rbf")


# --------------------------------------------------------------------------------------------------------------
# Features and Gram matrices

def as_features(x: torch.Tensor, name: str = "X") -> torch.Tensor:
    """(n, ...) activations -> float64 (n, features); 4-D maps and 3-D token sequences are flattened."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (n, features) (or (n, C, H, W) / (n, T, D), flattened), got "
                         f"{tuple(x.shape)}. For a single feature per example use {name}[:, None].")
    return x.detach().flatten(1).to(torch.float64)


def _check_same_n(a: torch.Tensor, b: torch.Tensor, names: str = "X and Y") -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{names} must describe the same examples: got n = {a.shape[0]} and {b.shape[0]}. CKA "
                         "compares two representations of the SAME images, row i of each being image i.")


def _centred_features(x: torch.Tensor, name: str = "X") -> torch.Tensor:
    """(n, ...) -> float64 (n, features) minus each feature's mean; refuses non-finite and constant features."""
    converted = isinstance(x, torch.Tensor) and x.dtype != torch.float64     # then as_features made a new tensor
    x = as_features(x, name)
    if not converted:
        x = x.clone()                                     # never centre the caller's tensor in place
    mean = x.mean(dim=0)
    # A NaN or inf anywhere makes its column's mean NaN or inf: one pass over p means instead of n x p entries.
    if not torch.isfinite(mean).all():
        raise ValueError(f"{name} holds NaN or infinite values, so its CKA is undefined. They come from the model or "
                         "its input: check that the weights are finite (a diverged run) and run in float32.")
    if torch.equal(x[1:], x[:1].expand_as(x[1:])):       # stops at the first difference: free for real features
        raise ValueError(f"{name} is constant: all {x.shape[0]} examples have the same features, so it has no "
                         "similarity structure and CKA is undefined. Leave this layer out, or check that the model "
                         "gets different inputs (and is not dead, e.g. zero weights).")
    return x.sub_(mean)


def _check_gram(K: torch.Tensor, name: str = "K") -> None:
    if K.dim() != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) Gram matrix, got {tuple(K.shape)}. Build one with "
                         "gram_linear(X) or gram_rbf(X).")
    if not torch.isfinite(K).all():
        raise ValueError(f"{name} holds NaN or infinite values. Build the Gram matrix from finite features with "
                         "gram_linear(X) or gram_rbf(X), which say which input is at fault.")


def _check_pair_of_grams(K: torch.Tensor, L: torch.Tensor) -> None:
    _check_gram(K, "K")
    _check_gram(L, "L")
    _check_same_n(K, L, "K and L")


def gram_linear(x: torch.Tensor, name: str = "X") -> torch.Tensor:
    """Linear-kernel Gram matrix Xc Xcᵀ of the centred features Xc = X - mean(X): (n, ...) -> float64 (n, n).

    Centring changes no CKA or HSIC value (both centre the Gram matrix anyway, or, for HSIC₁, ignore the terms that
    centring adds) but keeps the entries small. ``name`` is the input's name in the error for constant or
    non-finite features.
    """
    x = _centred_features(x, name)
    return x @ x.T


def _median(values: torch.Tensor) -> torch.Tensor:
    """Median as NumPy defines it: the mean of the two middle values for an even count (torch.median takes the
    lower one)."""
    v = values.flatten().sort().values
    m = v.numel()
    return v[m // 2] if m % 2 else 0.5 * (v[m // 2 - 1] + v[m // 2])


def _check_sigma(sigma: float) -> None:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number: the RBF kernel width as a fraction of the median distance "
                         f"between examples (0.2, 0.4 or 0.8 in Kornblith et al.), got {sigma!r}.")


def gram_rbf(x: torch.Tensor, sigma: float = 0.8, name: str = "X") -> torch.Tensor:
    """RBF-kernel Gram matrix exp(-‖x_i - x_j‖² / (2 σ_k²)): (n, ...) -> float64 (n, n).

    Bandwidth convention of Kornblith et al.'s reference code (``gram_rbf(x, threshold)`` in their Colab):
    ``exp(-sq_distances / (2 * threshold**2 * median(sq_distances)))``, where the median runs over all n² entries
    of the squared-distance matrix, its n zero diagonal entries included. Since the median commutes with the
    square root, the kernel width is σ_k = sigma × (median of the n² pairwise Euclidean distances), so ``sigma`` is
    a fraction of the median distance (the paper uses 0.2, 0.4, 0.8; our default is 0.8). The median is taken
    separately for each Gram matrix (each layer, each batch). The features are centred first (distances do not
    change; their float64 rounding does). ``name`` is the input's name in the errors.

    Raises:
        ValueError: ``sigma`` not positive, constant or non-finite features, or a median distance of 0.
    """
    _check_sigma(sigma)
    x = _centred_features(x, name)
    dots = x @ x.T
    sq_norms = dots.diagonal()
    sq_distances = (sq_norms[:, None] + sq_norms[None, :] - 2 * dots).clamp_min(0)   # clamp float rounding below 0
    sq_median = _median(sq_distances)
    if sq_median <= 0:
        raise ValueError("The median pairwise distance is 0 (more than half of the pairs of examples are identical), "
                         "so the RBF bandwidth is undefined. Use more distinct examples or the linear kernel.")
    return torch.exp(-sq_distances / (2 * sigma ** 2 * sq_median))


def _gram(x: torch.Tensor, kernel: str, sigma: float, name: str = "X") -> torch.Tensor:
    if kernel == "linear":
        return gram_linear(x, name)
    if kernel == "rbf":
        return gram_rbf(x, sigma, name)
    raise ValueError(f"kernel must be one of {KERNELS}, not {kernel!r}.")


def center_gram(K: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11ᵀ/n: subtract row and column means, add back the grand mean. (n, n) -> float64 (n, n)."""
    _check_gram(K)
    K = K.to(torch.float64)
    return K - K.mean(dim=0, keepdim=True) - K.mean(dim=1, keepdim=True) + K.mean()


# --------------------------------------------------------------------------------------------------------------
# HSIC and CKA

def hsic_biased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Biased HSIC (Gretton et al. 2005): tr(K H L H) / (n-1)², a float64 scalar."""
    _check_pair_of_grams(K, L)
    n = K.shape[0]
    return (center_gram(K) * center_gram(L)).sum() / (n - 1) ** 2     # tr(AB) = sum(A * B) for symmetric A


def hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC₁ (Song et al. 2012), a float64 scalar. With K̃, L̃ the Grams with zeroed diagonals::

        HSIC₁ = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3))

    Needs n >= 4. Unlike the biased estimator it can be slightly negative for independent representations.
    """
    _check_pair_of_grams(K, L)
    n = K.shape[0]
    _check_unbiased_n(n)
    K, L = _zero_diagonal(K), _zero_diagonal(L)
    trace = (K * L).sum()
    sums = K.sum() * L.sum() / ((n - 1) * (n - 2))
    cross = 2 / (n - 2) * (K.sum(dim=1) @ L.sum(dim=1))                 # 1ᵀK̃L̃1 = (K̃1)·(L̃1)
    return (trace + sums - cross) / (n * (n - 3))


def _check_unbiased_n(n: int) -> None:
    if n < 4:
        raise ValueError(f"The unbiased HSIC needs at least 4 examples (its formula divides by n(n-3)), got n = {n}. "
                         "Use a larger batch, or unbiased=False.")


def _zero_diagonal(K: torch.Tensor) -> torch.Tensor:
    K = K.to(torch.float64).clone()
    K.diagonal(dim1=-2, dim2=-1).zero_()
    return K


def cka_from_grams(K: torch.Tensor, L: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """CKA = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)) for two (n, n) Gram matrices of the same n examples.

    NaN or infinite entries raise a ValueError naming K or L. A Gram matrix with no similarity structure (that of a
    constant representation: HSIC(K, K) = 0 up to rounding) gives a meaningless ratio (NaN, ±inf or an arbitrary
    number): build the Grams with :func:`gram_linear` / :func:`gram_rbf`, which refuse constant features.
    """
    hsic = hsic_unbiased if unbiased else hsic_biased
    return hsic(K, L) / torch.sqrt(hsic(K, K) * hsic(L, L))


def linear_cka(X: torch.Tensor, Y: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """Linear CKA between features X (n, ...) and Y (n, ...), a float64 scalar. Builds (n, n) Grams: for many
    examples use :class:`MinibatchCKA`.

    Raises:
        ValueError: X or Y constant (all examples the same) or with NaN/infinite values; the message names which.
    """
    _check_same_n(X, Y)
    return cka_from_grams(gram_linear(X, "X"), gram_linear(Y, "Y"), unbiased)


def rbf_cka(X: torch.Tensor, Y: torch.Tensor, sigma: float = 0.8, unbiased: bool = False) -> torch.Tensor:
    """RBF CKA with kernel width sigma × median pairwise distance (see :func:`gram_rbf`), a float64 scalar.

    Raises:
        ValueError: ``sigma`` not positive; X or Y constant or with NaN/infinite values (the message names which).
    """
    _check_same_n(X, Y)
    return cka_from_grams(gram_rbf(X, sigma, "X"), gram_rbf(Y, sigma, "Y"), unbiased)


# --------------------------------------------------------------------------------------------------------------
# Minibatch CKA over many layer pairs

Activations = Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


def _labelled(acts: Activations, which: str) -> list[tuple[str, torch.Tensor]]:
    """[(label, activation)]: "layer 'block3' of A" for a mapping (names known), else "acts_a[2]"."""
    if isinstance(acts, Mapping):
        return [(f"layer {name!r} of {which[-1].upper()}", x) for name, x in acts.items()]
    return [(f"{which}[{i}]", x) for i, x in enumerate(acts)]


class MinibatchCKA:
    """Accumulates the CKA matrix between ``num_layers_a`` layers and ``num_layers_b`` layers over minibatches.

    Per batch, each layer's Gram matrix is computed once (not once per pair), and the HSIC terms of all pairs come
    from one matrix product of the stacked Grams: for the zero-diagonal Grams K̃_i (layers of A) and L̃_j (layers of
    B), tr(K̃_i L̃_j) = <vec K̃_i, vec L̃_j>, so all n_a x n_b traces are ``Ka_flat @ Lb_flat.T``, and the
    1ᵀK̃L̃1 terms are ``rows_a @ rows_b.T`` with the row sums. The cost is n_a + n_b Grams plus one
    (n_a, b²) x (b², n_b) product per batch instead of 2 · n_a · n_b Grams. The Grams come from
    :func:`gram_linear` / :func:`gram_rbf`, so from centred features.

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
        self.num_layers_a, self.num_layers_b = num_layers_a, num_layers_b
        self.symmetric = num_layers_b is None
        self.kernel, self.sigma, self.unbiased = kernel, sigma, unbiased
        self.reset()

    def reset(self) -> None:
        self.hsic_ab: torch.Tensor | None = None     # running sums over batches (float64)
        self.hsic_aa: torch.Tensor | None = None
        self.hsic_bb: torch.Tensor | None = None
        self.num_batches = 0

    def _stacked_grams(self, acts: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
        """Per layer (b, ...) -> (layers, b, b): zero-diagonal Grams (unbiased) or centred Grams (biased)."""
        prepare = _zero_diagonal if self.unbiased else center_gram
        return torch.stack([prepare(_gram(x, self.kernel, self.sigma, label)) for label, x in acts])

    def _pair_terms(self, Ka: torch.Tensor, Lb: torch.Tensor) -> torch.Tensor:
        """(n_a, b, b), (n_b, b, b) prepared Grams -> HSIC of every pair (n_a, n_b)."""
        n = Ka.shape[-1]
        traces = Ka.flatten(1) @ Lb.flatten(1).T                               # tr(K_i L_j) for all pairs
        if not self.unbiased:
            return traces / (n - 1) ** 2
        sums_a, sums_b = Ka.sum(dim=(1, 2)), Lb.sum(dim=(1, 2))                # 1ᵀK̃1
        rows_a, rows_b = Ka.sum(dim=2), Lb.sum(dim=2)                          # K̃1, (layers, b)
        return (traces + sums_a[:, None] * sums_b[None, :] / ((n - 1) * (n - 2))
                - 2 / (n - 2) * rows_a @ rows_b.T) / (n * (n - 3))

    def _self_terms(self, K: torch.Tensor) -> torch.Tensor:
        """(layers, b, b) prepared Grams -> HSIC(K_i, K_i) for each layer (layers,)."""
        n = K.shape[-1]
        traces = (K * K).sum(dim=(1, 2))
        if not self.unbiased:
            return traces / (n - 1) ** 2
        sums, rows = K.sum(dim=(1, 2)), K.sum(dim=2)
        return (traces + sums ** 2 / ((n - 1) * (n - 2)) - 2 / (n - 2) * (rows * rows).sum(dim=1)) / (n * (n - 3))

    def _accumulate(self, ab: torch.Tensor, aa: torch.Tensor, bb: torch.Tensor) -> None:
        """Add one batch's HSIC terms: every pair (n_a, n_b), A's layers with themselves (n_a,), B's (n_b,)."""
        if self.num_batches == 0:
            self.hsic_ab, self.hsic_aa, self.hsic_bb = ab.clone(), aa.clone(), bb.clone()
        else:
            self.hsic_ab += ab
            self.hsic_aa += aa
            self.hsic_bb += bb
        self.num_batches += 1

    def _check_batch(self, acts: list[tuple[str, torch.Tensor]], expected: int, which: str, n: int) -> None:
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

    def _batch(self, acts_a: Activations, acts_b: Activations | None):
        """Validate one batch; return the labelled activations of A and of B (None when symmetric)."""
        acts_a = _labelled(acts_a, "acts_a")
        if not acts_a:
            raise ValueError("update() needs the activations of at least one layer.")
        n = acts_a[0][1].shape[0]
        self._check_batch(acts_a, self.num_layers_a, "acts_a", n)
        if self.symmetric and acts_b is not None:
            raise ValueError("This accumulator is symmetric (num_layers_b=None): call update(acts_a) only.")
        if not self.symmetric:
            if acts_b is None:
                raise ValueError(f"This accumulator compares two layer lists: call update(acts_a, acts_b) with "
                                 f"{self.num_layers_b} activations for B.")
            acts_b = _labelled(acts_b, "acts_b")
            self._check_batch(acts_b, self.num_layers_b, "acts_b", n)
        if self.unbiased:
            _check_unbiased_n(n)
        return acts_a, acts_b

    def update(self, acts_a: Activations, acts_b: Activations | None = None) -> None:
        """Add one batch: the activations (b, ...) of each layer of A (and of B) for the same b images.

        A list or a {name: activation} mapping (then errors name the layer). A layer whose activations are constant
        over the batch, or not finite, raises a ValueError naming it (``acts_a[i]`` or the layer's name), and the
        batch is not added.
        """
        acts_a, acts_b = self._batch(acts_a, acts_b)
        Ka = self._stacked_grams(acts_a)
        Lb = Ka if self.symmetric else self._stacked_grams(acts_b)
        aa = self._self_terms(Ka)
        self._accumulate(self._pair_terms(Ka, Lb), aa, aa if self.symmetric else self._self_terms(Lb))

    def compute(self) -> torch.Tensor:
        """The CKA matrix (n_a, n_b) (n_a, n_a when symmetric), float64 on the CPU: mean HSIC over batches, then the
        ratio. Constant layers never get here (``update`` refuses them); entries of a layer whose mean HSIC with
        itself is still not positive are NaN (HSIC₁ is an unbiased estimate, and can dip below 0 for a layer with
        almost no structure seen in few, small batches)."""
        if self.num_batches == 0:
            raise RuntimeError("No batch yet: call update() at least once before compute().")
        ab, aa, bb = (t.cpu() / self.num_batches for t in (self.hsic_ab, self.hsic_aa, self.hsic_bb))
        return ab / torch.sqrt(aa[:, None] * bb[None, :])


# --------------------------------------------------------------------------------------------------------------
# Driver: two models, many images

def _batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[(start, end)] cutting n examples into batches; a last batch smaller than 4 (too small for HSIC₁) joins the
    one before it."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < 4:
        starts.pop()
    return [(s, starts[k + 1] if k + 1 < len(starts) else n) for k, s in enumerate(starts)]


def _model_input(x: torch.Tensor, preprocess: Preprocessing | None) -> torch.Tensor:
    """uint8 images through ``preprocess``; float images as they are (then ``preprocess`` must be None)."""
    if x.dtype == torch.uint8:
        if preprocess is None:
            raise ValueError("cka_matrix got uint8 images, but the models take the float input they were trained on. "
                             "Pass the ImageSet itself, or preprocess=run.preprocess, or convert with the run's "
                             "preprocessing, e.g. run.preprocess(images).")
        return preprocess(x)
    if preprocess is not None:
        raise ValueError(f"preprocess= converts uint8 images, but cka_matrix got {x.dtype} images: these should "
                         "already be the model's input. Drop preprocess=, or pass the uint8 images (or ImageSet).")
    return x


def _image_batches(data, batch_size: int, device: torch.device,
                   preprocess: Preprocessing | None) -> Iterator[torch.Tensor]:
    """The model's input batches (b, 3, H, W) on ``device`` from an ImageSet, a tensor or an iterable of batches."""
    if isinstance(data, ImageSet):
        preprocess = preprocess if preprocess is not None else Preprocessing.for_dataset(data.dataset)
        data = data.images
    if isinstance(data, torch.Tensor):
        batches = (data[s:e] for s, e in _batch_bounds(len(data), batch_size))
    else:                  # a loader: (images, labels, ...) tuples or bare image tensors
        batches = (item[0] if isinstance(item, (tuple, list)) else item for item in data)
    for x in batches:
        yield _model_input(x.to(device), preprocess)


def cka_matrix(model_a: nn.Module, model_b: nn.Module | None, data, layers_a: Layers | None = None,
               layers_b: Layers | None = None, batch_size: int = 100, device: str | torch.device | None = None,
               kernel: str = "linear", unbiased: bool = True, sigma: float = 0.8,
               preprocess: Preprocessing | None = None, verbose: bool = False) -> torch.Tensor:
    """Minibatch CKA between every layer of ``model_a`` and every layer of ``model_b`` on the same images.

    Each batch goes through each model once (eval mode, no gradients); forward hooks record the layers, and a
    :class:`MinibatchCKA` accumulates. With ``model_b`` None or the same object as ``model_a``, the model runs once
    per batch (ViT x ViT); with the same layers on both sides the symmetric matrix is computed.

    Args:
        model_a, model_b: the models (already on ``device``).
        data: an :class:`~course_lib.data.ImageSet` (its uint8 images go through ``preprocess``), uint8 images
            (N, 3, H, W) with ``preprocess``, float images (N, 3, H, W) that are already the models' input, or an
            iterable of batches (images or (images, labels) tuples, e.g. a ``GPULoader`` with ``train=False``).
        layers_a, layers_b: layer specifications (see :func:`course_lib.hooks.resolve_layers`); None = the model's
            default layers (ViT: all blocks; ResNet: stem + 4 stages). ``layers_b`` None with the same model means
            ``layers_a``.
        batch_size: images per batch for tensors and ImageSets (a loader decides its own); a whole number >= 1.
        device: where the images go; default: ``model_a``'s device.
        kernel, unbiased, sigma: see :class:`MinibatchCKA`.
        preprocess: the :class:`~course_lib.data.Preprocessing` the models were trained with (``run.preprocess``),
            for uint8 images; default for an ImageSet: its data set's standardisation,
            ``Preprocessing.for_dataset(data.dataset)``. Pass ``course_lib.data.RAW`` for raw [0, 1] pixels.
        verbose: print the number of batches and the time taken.

    Returns:
        float64 (n_a, n_b) CKA matrix on the CPU; row i is ``list(layers_a)[i]``, column j ``list(layers_b)[j]``.

    Raises:
        ValueError: uint8 images without a preprocessing, raw 0..255 float pixels, a bad ``batch_size``, or a layer
            with constant or non-finite activations in a batch (the message names the layer).
    """
    check_whole("cka_matrix", batch_size=batch_size)
    same = model_b is None or model_b is model_a
    model_b = model_a if same else model_b
    layers_a = resolve_layers(model_a, layers_a)
    layers_b = layers_a if same and layers_b is None else resolve_layers(model_b, layers_b)
    symmetric = same and list(layers_a.items()) == list(layers_b.items())
    device = torch.device(device) if device is not None else next(model_a.parameters()).device

    acc = MinibatchCKA(len(layers_a), None if symmetric else len(layers_b), kernel, sigma, unbiased)
    rec_a = ActivationRecorder(model_a, {**layers_a, **layers_b} if same else layers_a, flatten=True)
    rec_b = rec_a if same else ActivationRecorder(model_b, layers_b, flatten=True)
    start = time.perf_counter()
    with eval_mode(model_a, model_b), rec_a, (nullcontext() if same else rec_b):
        for x in _image_batches(data, batch_size, device, preprocess):
            check_pixels(x, "cka_matrix")
            model_a(x)
            if not same:
                model_b(x)
            acts_a, acts_b = rec_a.activations, rec_b.activations
            acc.update({n: acts_a[n] for n in layers_a}, None if symmetric else {n: acts_b[n] for n in layers_b})
    if verbose:
        print(f"CKA over {acc.num_batches} batches: {time.perf_counter() - start:.1f} s")
    return acc.compute()
