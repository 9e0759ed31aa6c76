"""CKA: float64 NumPy references written out here, invariances, unbiasedness of HSIC₁, the minibatch accumulator."""
from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from course_lib.cka import (MinibatchCKA, center_gram, cka_from_grams, cka_matrix, gram_linear, gram_rbf,
                            hsic_biased, hsic_unbiased, linear_cka, rbf_cka)
from course_lib.data import RAW, ImageSet, Preprocessing
from course_lib.hooks import record_activations, resnet_layers
from course_lib.models import ResNetCIFAR, ViT

# What the refusal of images a model never saw says: the caller, the problem, the fix.
UINT8 = r"{caller} got (torch\.)?uint8 images.*run\.preprocess\(images\)"
RAW_PIXELS = r"{caller} got pixel values up to \d+: these are raw 0\.\.255 pixels.*run\.preprocess\(images\)"


# ---- independent float64 NumPy references ---------------------------------------------------------------------

def np_gram_linear(x):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x @ x.T


def np_gram_rbf(x, threshold):
    """Kornblith et al.'s reference gram_rbf, as in their Colab."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    dot_products = x @ x.T
    sq_norms = np.diag(dot_products)
    sq_distances = -2 * dot_products + sq_norms[:, None] + sq_norms[None, :]
    sq_median_distance = np.median(sq_distances)
    return np.exp(-sq_distances / (2 * threshold ** 2 * sq_median_distance))


def np_hsic_biased(K, L):
    n = len(K)
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def np_hsic_unbiased(K, L):
    """Song et al. (2012), with ones-vectors as written in the paper."""
    n = len(K)
    Kt, Lt, one = K - np.diag(np.diag(K)), L - np.diag(np.diag(L)), np.ones(n)
    return (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ Kt @ Lt @ one) / (n * (n - 3))


def np_cka(K, L, unbiased=False):
    hsic = np_hsic_unbiased if unbiased else np_hsic_biased
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def features(n=40, p=12, q=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g, dtype=torch.float64)
    Y = torch.tanh(X[:, :q] @ torch.randn(q, q, generator=g, dtype=torch.float64)) + \
        0.5 * torch.randn(n, q, generator=g, dtype=torch.float64)
    return X, Y


# ---- single-pair CKA ------------------------------------------------------------------------------------------

def test_grams_and_hsic_match_numpy():
    X, Y = features()
    K, L = gram_linear(X), gram_linear(Y)
    Xc = X.numpy() - X.numpy().mean(axis=0)                 # the Gram of the centred features
    np.testing.assert_allclose(K.numpy(), Xc @ Xc.T, rtol=1e-12, atol=1e-12)
    n = len(K)
    H = np.eye(n) - np.ones((n, n)) / n
    np.testing.assert_allclose(center_gram(K).numpy(), H @ K.numpy() @ H, atol=1e-10)
    np.testing.assert_allclose(hsic_biased(K, L).item(), np_hsic_biased(K.numpy(), L.numpy()), rtol=1e-6)
    np.testing.assert_allclose(hsic_unbiased(K, L).item(), np_hsic_unbiased(K.numpy(), L.numpy()), rtol=1e-6)
    for unbiased in (False, True):
        want = np_cka(K.numpy(), L.numpy(), unbiased)
        np.testing.assert_allclose(linear_cka(X, Y, unbiased).item(), want, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(cka_from_grams(K, L, unbiased).item(), want, rtol=1e-6, atol=1e-9)


def test_unbiased_hsic_equals_brute_force_u_statistic():
    # HSIC₁ is the U-statistic of E[k_ij l_ij] + E[k_ij] E[l_qr] - 2 E[k_ij l_iq] over distinct indices: sum every
    # distinct index tuple by brute force (n = 7: 840 four-tuples).
    X, Y = features(n=7, seed=3)
    K, L = np_gram_linear(X.numpy()), np_gram_linear(Y.numpy())
    n = 7
    pairs = list(itertools.permutations(range(n), 2))
    triples = list(itertools.permutations(range(n), 3))
    quads = list(itertools.permutations(range(n), 4))
    t1 = sum(K[i, j] * L[i, j] for i, j in pairs) / len(pairs)
    t2 = sum(K[i, j] * L[q, r] for i, j, q, r in quads) / len(quads)
    t3 = sum(K[i, j] * L[i, q] for i, j, q in triples) / len(triples)
    brute = t1 + t2 - 2 * t3
    np.testing.assert_allclose(hsic_unbiased(torch.from_numpy(K), torch.from_numpy(L)).item(), brute, rtol=1e-9)


def test_rbf_matches_kornblith_reference():
    X, Y = features(n=30)            # n² = 900 is even: the median is the mean of the two middle values
    for sigma in (0.4, 0.8, 1.0):
        K_ref = np_gram_rbf(X.numpy(), sigma)
        np.testing.assert_allclose(gram_rbf(X, sigma).numpy(), K_ref, rtol=1e-9, atol=1e-12)
        want = np_cka(K_ref, np_gram_rbf(Y.numpy(), sigma))
        np.testing.assert_allclose(rbf_cka(X, Y, sigma).item(), want, rtol=1e-6)
    # The bandwidth is sigma x median distance: scaling the data does not change the kernel.
    torch.testing.assert_close(gram_rbf(3.0 * X), gram_rbf(X))


def test_linear_cka_equals_feature_space_formula():
    X, Y = features(n=50, p=30, q=9, seed=1)
    Xc, Yc = X.numpy() - X.numpy().mean(0), Y.numpy() - Y.numpy().mean(0)
    want = np.linalg.norm(Yc.T @ Xc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))
    np.testing.assert_allclose(linear_cka(X, Y).item(), want, rtol=1e-9)


def test_invariances():
    X, Y = features(n=60, p=10, seed=2)
    Q, _ = torch.linalg.qr(torch.randn(10, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    base = linear_cka(X, Y).item()
    assert 0.05 < base < 0.95
    for fn in (linear_cka, rbf_cka, lambda a, b: linear_cka(a, b, unbiased=True)):
        np.testing.assert_allclose(fn(X, X).item(), 1.0, rtol=1e-12)
        np.testing.assert_allclose(fn(X @ Q, Y).item(), fn(X, Y).item(), rtol=1e-9)      # orthogonal
        np.testing.assert_allclose(fn(4.2 * X, Y).item(), fn(X, Y).item(), rtol=1e-9)    # isotropic scaling
    # An invertible but anisotropic linear map changes linear CKA: CKA is not CCA.
    A = torch.diag(torch.logspace(-2, 1, 10, dtype=torch.float64))
    assert abs(linear_cka(X @ A, Y).item() - base) > 0.05
    assert linear_cka(X @ A, X).item() < 0.9


def test_flattening_feature_maps_and_tokens():
    maps = torch.randn(8, 3, 4, 4)
    tokens = torch.randn(8, 5, 6)
    np.testing.assert_allclose(linear_cka(maps, tokens).item(),
                               np_cka(np_gram_linear(maps.numpy()), np_gram_linear(tokens.numpy())), rtol=1e-6)


def test_errors():
    X, Y = features(n=10)
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(X, Y[:9])
    with pytest.raises(ValueError, match="at least 4 examples"):
        linear_cka(X[:3], Y[:3], unbiased=True)
    with pytest.raises(ValueError, match="at least 4 examples"):
        hsic_unbiased(gram_linear(X[:3]), gram_linear(Y[:3]))
    with pytest.raises(ValueError, match=r"\(n, features\)"):
        linear_cka(torch.randn(10), torch.randn(10))
    with pytest.raises(ValueError, match="square"):
        hsic_biased(X, X)
    with pytest.raises(ValueError, match="X is constant"):
        gram_rbf(torch.ones(6, 3))
    with pytest.raises(ValueError, match="median"):                  # 5 of 6 rows equal: most distances are 0
        gram_rbf(torch.cat([torch.ones(5, 3), torch.zeros(1, 3)]))
    with pytest.raises(ValueError, match="kernel"):
        MinibatchCKA(2, 2, kernel="poly")
    acc = MinibatchCKA(2, 1)
    with pytest.raises(RuntimeError, match="update"):
        acc.compute()
    with pytest.raises(ValueError, match="built for 2 layers"):
        acc.update([X], [Y])
    with pytest.raises(ValueError, match="same b examples"):
        acc.update([X, X[:5]], [Y])
    with pytest.raises(ValueError, match="at least 4 examples"):
        acc.update([X[:3], X[:3]], [Y[:3]])
    with pytest.raises(ValueError, match="update\\(acts_a, acts_b\\)"):
        acc.update([X, X])


def test_a_constant_offset_does_not_change_cka():
    # CKA only sees the features around their mean: X + c has the CKA of X. Before the features were centred, the
    # unbiased estimator cancelled huge Gram entries (~1e8 · p) and gave garbage or ±inf for an offset of 1e4.
    X, Y = features(n=50, p=20, q=8, seed=0)
    Kx, Ly = np_gram_linear(X.numpy()), np_gram_linear(Y.numpy())
    for unbiased in (False, True):
        want = np_cka(Kx, Ly, unbiased)
        np.testing.assert_allclose(linear_cka(X + 1e4, Y, unbiased).item(), want, rtol=1e-7)
        np.testing.assert_allclose(linear_cka(X + 1e4, Y - 3e3, unbiased).item(), want, rtol=1e-7)
    np.testing.assert_allclose(rbf_cka(X + 1e7, Y).item(), np_cka(np_gram_rbf(X.numpy(), 0.8),
                                                                   np_gram_rbf(Y.numpy(), 0.8)), rtol=1e-7)
    # The minibatch accumulator builds its linear Grams from centred features too.
    batches_a, batches_b = random_batches()
    acc = MinibatchCKA(3, 2)
    for acts_a, acts_b in zip(batches_a, batches_b):
        acc.update([a.double() + 1e4 for a in acts_a], [b.double() - 1e4 for b in acts_b])
    np.testing.assert_allclose(acc.compute().numpy(), np_minibatch_cka(batches_a, batches_b, np_gram_linear),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("unbiased", [False, True])
def test_constant_or_non_finite_features_are_refused_by_name(unbiased):
    X, Y = features(n=10)
    for value in (0.1, 3.7, 1e3):                        # used to give NaN, -inf or a number, depending on the value
        with pytest.raises(ValueError, match="X is constant"):
            linear_cka(torch.full((10, 4), value, dtype=torch.float64), Y, unbiased)
        with pytest.raises(ValueError, match="Y is constant"):
            linear_cka(X, torch.full((10, 4), value, dtype=torch.float64), unbiased)
    bad = Y.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="Y holds NaN or infinite"):
        linear_cka(X, bad, unbiased)
    with pytest.raises(ValueError, match="X holds NaN or infinite"):
        rbf_cka(X.clone().fill_(float("inf")), Y, unbiased=unbiased)
    with pytest.raises(ValueError, match="K holds NaN or infinite"):
        cka_from_grams(gram_linear(X) * float("inf"), gram_linear(Y), unbiased)
    acc = MinibatchCKA(2, 1, unbiased=unbiased)
    with pytest.raises(ValueError, match=r"acts_a\[1\] is constant"):
        acc.update([X, torch.zeros(10, 3)], [Y])
    with pytest.raises(ValueError, match=r"acts_b\[0\] holds NaN"):
        acc.update([X, X], [bad])
    assert acc.num_batches == 0                                     # a refused batch adds nothing


def test_sigma_must_be_positive():
    X, Y = features(n=10)
    for sigma in (0, -0.5, float("nan")):
        with pytest.raises(ValueError, match="sigma must be a positive number"):
            gram_rbf(X, sigma)
        with pytest.raises(ValueError, match="sigma must be a positive number"):
            rbf_cka(X, Y, sigma)
        with pytest.raises(ValueError, match="sigma must be a positive number"):
            MinibatchCKA(1, 1, kernel="rbf", sigma=sigma)


# ---- minibatch CKA --------------------------------------------------------------------------------------------

def np_minibatch_cka(batches_a, batches_b, gram, unbiased=True):
    """Per-pair loop: average each HSIC over batches, then the ratio."""
    hsic = np_hsic_unbiased if unbiased else np_hsic_biased
    na, nb = len(batches_a[0]), len(batches_b[0])
    ab, aa, bb = np.zeros((na, nb)), np.zeros((na, nb)), np.zeros((na, nb))
    for acts_a, acts_b in zip(batches_a, batches_b):
        for i in range(na):
            for j in range(nb):
                K, L = gram(acts_a[i].numpy()), gram(acts_b[j].numpy())
                ab[i, j] += hsic(K, L)
                aa[i, j] += hsic(K, K)
                bb[i, j] += hsic(L, L)
    return ab / np.sqrt(aa * bb)


def random_batches(num_batches=3, b=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    batches_a, batches_b = [], []
    for _ in range(num_batches):
        z = torch.randn(b, 6, generator=g)
        batches_a.append([z @ torch.randn(6, 5, generator=g),                                     # (b, 5)
                          torch.randn(b, 2, 3, 3, generator=g) + z[:, :1, None, None],             # a feature map
                          torch.relu(z).repeat(1, 3)])
        batches_b.append([torch.tanh(z[:, :3]), torch.randn(b, 4, 5, generator=g) * z[:, None, :5]])
    return batches_a, batches_b


@pytest.mark.parametrize("kernel,unbiased", [("linear", True), ("linear", False), ("rbf", True)])
def test_accumulator_matches_per_pair_reference(kernel, unbiased):
    batches_a, batches_b = random_batches()
    acc = MinibatchCKA(3, 2, kernel=kernel, sigma=0.8, unbiased=unbiased)
    for acts_a, acts_b in zip(batches_a, batches_b):
        acc.update(acts_a, acts_b)
    gram = np_gram_linear if kernel == "linear" else (lambda x: np_gram_rbf(x, 0.8))
    want = np_minibatch_cka(batches_a, batches_b, gram, unbiased)
    got = acc.compute()
    assert got.shape == (3, 2) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)


def test_symmetric_accumulator():
    batches_a, _ = random_batches(seed=1)
    sym = MinibatchCKA(3)
    for acts in batches_a:
        sym.update({f"l{i}": a for i, a in enumerate(acts)})      # a dict of activations works too
    got = sym.compute()
    np.testing.assert_allclose(got.numpy(), np_minibatch_cka(batches_a, batches_a, np_gram_linear), rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(np.diag(got.numpy()), 1.0, rtol=1e-12)
    np.testing.assert_allclose(got.numpy(), got.numpy().T, rtol=1e-12)


def test_unbiased_hsic_averaged_over_all_subsets_is_the_full_value(one_thread):
    # HSIC₁ is a U-statistic, so its average over ALL subsets of size m equals its value on the full set: minibatch
    # averaging is exactly unbiased. Here n = 9, m = 5: 126 subsets.
    X, Y = features(n=9, p=6, q=4, seed=4)
    acc = MinibatchCKA(1, 1)
    for subset in itertools.combinations(range(9), 5):
        idx = torch.tensor(subset)
        acc.update([X[idx]], [Y[idx]])
    np.testing.assert_allclose(acc.hsic_ab.item() / acc.num_batches, hsic_unbiased(gram_linear(X), gram_linear(Y)),
                               rtol=1e-10)
    np.testing.assert_allclose(acc.compute().item(), linear_cka(X, Y, unbiased=True).item(), rtol=1e-10)


def test_minibatch_cka_converges_to_full_batch_unbiased_cka(one_thread):
    # Random minibatches: minibatch CKA approaches the full-batch unbiased CKA as batches accumulate. The biased
    # estimator does not: its minibatch average stays off by a systematic amount.
    X, Y = features(n=400, p=20, q=10, seed=7)
    full_unbiased = linear_cka(X, Y, unbiased=True).item()
    full_biased = linear_cka(X, Y).item()
    g = torch.Generator().manual_seed(0)
    acc_u, acc_b = MinibatchCKA(1, 1), MinibatchCKA(1, 1, unbiased=False)
    for _ in range(200):
        idx = torch.randperm(400, generator=g)[:40]
        acc_u.update([X[idx]], [Y[idx]])
        acc_b.update([X[idx]], [Y[idx]])
    assert abs(acc_u.compute().item() - full_unbiased) < 0.02
    assert abs(acc_b.compute().item() - full_biased) > 0.08


# ---- the driver with real models -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    return ViT(img_size=16, depth=2, dim=16, heads=2).eval(), ResNetCIFAR(blocks=(1, 1, 1, 1), width=8).eval()


def test_cka_matrix_vit_vs_resnet(tiny_models):
    vit, resnet = tiny_models
    images = torch.randn(26, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    layers_b = {**resnet_layers(resnet, "stages"), **resnet_layers(resnet, "convs")}
    got = cka_matrix(vit, resnet, images, None, layers_b, batch_size=8)
    assert got.shape == (2, 5 + 9)
    # Reference: record each batch by hand; the last 2 images join the third batch (8, 8, 10).
    batches_a, batches_b = [], []
    for s, e in ((0, 8), (8, 16), (16, 26)):
        acts_a = record_activations(vit, images[s:e])
        acts_b = record_activations(resnet, images[s:e], layers_b)
        batches_a.append(list(acts_a.values()))
        batches_b.append(list(acts_b.values()))
    np.testing.assert_allclose(got.numpy(), np_minibatch_cka(batches_a, batches_b, np_gram_linear), rtol=1e-6,
                               atol=1e-6)


def _imageset(n=24, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                    torch.zeros(n, dtype=torch.long), "cifar10", "test", [str(i) for i in range(10)], "test")


def test_cka_matrix_same_model_and_imageset(tiny_models):
    vit, _ = tiny_models
    data = _imageset()
    sym = cka_matrix(vit, None, data, batch_size=8)
    np.testing.assert_allclose(np.diag(sym.numpy()), 1.0, rtol=1e-12)
    # By default an ImageSet is fed as the course recipe trains: standardised with its data set's statistics.
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    x = (data.images.double() / 255 - mean) / std
    by_tensor = cka_matrix(vit, vit, x.float(), batch_size=8)
    np.testing.assert_allclose(sym.numpy(), by_tensor.numpy(), rtol=1e-6)
    # A loader of (images, labels) batches gives the same numbers.
    loader = [(x[i:i + 8].float(), None) for i in range(0, 24, 8)]
    np.testing.assert_allclose(cka_matrix(vit, None, loader).numpy(), by_tensor.numpy(), rtol=1e-9)


def test_cka_matrix_feeds_the_runs_preprocessing(tiny_models):
    vit, resnet = tiny_models
    data = _imageset(seed=2)
    # A model trained on raw [0, 1] pixels (normalize=False) is analysed on raw [0, 1] pixels.
    raw = cka_matrix(vit, resnet, data, batch_size=8, preprocess=RAW)
    want = cka_matrix(vit, resnet, data.images.double().div(255).float(), batch_size=8)
    np.testing.assert_allclose(raw.numpy(), want.numpy(), rtol=1e-6)
    # uint8 images in a tensor take the preprocessing too; the result differs from the standardised one.
    np.testing.assert_allclose(cka_matrix(vit, resnet, data.images, batch_size=8, preprocess=RAW).numpy(),
                               want.numpy(), rtol=1e-9)
    assert np.abs(cka_matrix(vit, resnet, data, batch_size=8).numpy() - raw.numpy()).max() > 1e-3
    with pytest.raises(TypeError, match="normalize"):
        cka_matrix(vit, resnet, data, normalize=False)                 # the old flag is gone


def test_cka_matrix_refuses_inputs_the_model_never_saw(tiny_models):
    vit, resnet = tiny_models
    data = _imageset()
    for images in (data.images, [data.images[:8], data.images[8:16]]):        # uint8, as a tensor or a loader
        with pytest.raises(ValueError, match=UINT8.format(caller="cka_matrix")):
            cka_matrix(vit, resnet, images)
    raw_float = data.images.float()                                              # 0..255 floats
    for images in (raw_float, [(raw_float[:8], None)]):
        with pytest.raises(ValueError, match=RAW_PIXELS.format(caller="cka_matrix")):
            cka_matrix(vit, None, images)
    with pytest.raises(ValueError, match="preprocess= converts uint8"):
        cka_matrix(vit, None, raw_float / 255, preprocess=RAW)
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a whole number"):
            cka_matrix(vit, None, data, batch_size=bad)


def test_cka_matrix_names_a_constant_layer():
    torch.manual_seed(0)
    conv, dead = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1)
    nn.init.zeros_(dead.weight)
    nn.init.zeros_(dead.bias)                                  # outputs 0 for every image: no structure to compare
    model = nn.Sequential(conv, dead)
    images = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="layer 'dead' of A is constant"):
        cka_matrix(model, None, images, {"conv": conv, "dead": dead}, batch_size=8)


def _load_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cka.py"
    sys.path.insert(0, str(path.parent))          # the benchmarks import their shared `common` module
    spec = importlib.util.spec_from_file_location("bench_cka", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kernel,unbiased", [("linear", True), ("linear", False), ("rbf", True)])
def test_benchmark_baseline_equals_accumulator_and_reference(kernel, unbiased):
    naive_cls = _load_benchmark().NaiveMinibatchCKA
    batches_a, batches_b = random_batches(seed=5)
    fast, naive = MinibatchCKA(3, 2, kernel, 0.8, unbiased), naive_cls(3, 2, kernel, 0.8, unbiased)
    for acts_a, acts_b in zip(batches_a, batches_b):
        fast.update(acts_a, acts_b)
        naive.update(acts_a, acts_b)
    gram = np_gram_linear if kernel == "linear" else (lambda x: np_gram_rbf(x, 0.8))
    want = np_minibatch_cka(batches_a, batches_b, gram, unbiased)
    np.testing.assert_allclose(naive.compute().numpy(), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(naive.compute().numpy(), fast.compute().numpy(), rtol=1e-10, atol=1e-12)


def test_hsic_of_stacks_is_the_hsic_of_every_pair():
    batches_a, batches_b = random_batches(b=9, seed=3)
    Ks = torch.stack([gram_linear(x) for x in batches_a[0]])                 # (3, 9, 9)
    Ls = torch.stack([gram_linear(y) for y in batches_b[0]])                 # (2, 9, 9)
    for hsic in (hsic_unbiased, hsic_biased):
        got = hsic(Ks, Ls)
        assert got.shape == (3, 2)
        want = torch.tensor([[hsic(K, L).item() for L in Ls] for K in Ks], dtype=torch.float64)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-14)
        assert hsic(Ks[0], Ls[0]).dim() == 0


def test_cka_matrix_checks_every_batch_and_names_the_layer():
    # The activations are checked on the device and read once, after the last batch: a layer that goes NaN only in
    # the third batch is still refused by name.
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    model = nn.Sequential(conv, nn.ReLU())
    images = torch.randn(24, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    images[20, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="layer 'conv' of A holds NaN or infinite"):
        cka_matrix(model, None, images, {"conv": conv}, batch_size=8)
    assert cka_matrix(model, None, images[:16], {"conv": conv}, batch_size=8).shape == (1, 1)


def test_gram_of_float32_features_is_the_float64_gram():
    # The Gram is built a block of features at a time; float32 features are centred and multiplied in float64.
    g = torch.Generator().manual_seed(6)
    x = torch.randn(10, 2 ** 18 + 7, generator=g) * 3 + 100                 # 2.6 M values: two blocks
    xc = x.double() - x.double().mean(0)
    np.testing.assert_allclose(gram_linear(x).numpy(), (xc @ xc.T).numpy(), rtol=1e-10, atol=1e-8)
