"""How much faster is the minibatch CKA accumulator than the per-pair computation? CPU benchmark, float64 sums.

The full ViT-Lite x ResNet-18 CKA matrix of the course: all 9 ViT-Lite blocks against 22 ResNet-18 layers (stem + 4
stages, and the 17 convolutions), unbiased linear minibatch CKA over 1,000 real CIFAR-10 images (1,000 of the 2,000
committed train images, ``take(load_dataset("cifar10", "train", source="samples"), 1000)``, seed 0; the committed test
sample has only 870), random-init models (seed 0).

Each batch goes through both models once (forward hooks); then the SAME activations are fed to
- :class:`course_lib.cka.MinibatchCKA`: one Gram matrix per layer per batch, all pair terms by one matrix product;
- :class:`NaiveMinibatchCKA` (defined here, the baseline): for each of the 9 x 22 pairs, both Grams again and three
  HSIC calls.
The activations are taken by layer name (the ResNet layers nest: a stage fires after the convolutions inside it, so
firing order is not layer order). Only the CKA work is timed for each (the forward passes are timed apart). It
prints both times, the speed-up and the largest difference between the two matrices.

Run from the repository root (takes a few minutes on a 2-core CPU, almost all of it the naive computation):

    .venv/bin/python benchmarks/bench_cka.py
    .venv/bin/python benchmarks/bench_cka.py --images 500 --batch-size 50 --threads 2

Goal: the accumulator is at least 10x faster and gives the same matrix to 1e-5.
"""
from __future__ import annotations

import time

import torch

from common import cka_arguments, cka_images, device_name, report

from course_lib.cka import MinibatchCKA, gram_linear, gram_rbf, hsic_biased, hsic_unbiased
from course_lib.hooks import ActivationRecorder, resnet_layers, vit_layers
from course_lib.models import resnet18_cifar, vit_lite


class NaiveMinibatchCKA(MinibatchCKA):
    """The straightforward per-pair computation, the benchmark's baseline.

    For every pair (i, j) it builds both Gram matrices again and evaluates the three HSIC terms with
    :func:`~course_lib.cka.hsic_unbiased` / :func:`~course_lib.cka.hsic_biased`: 2 · n_a · n_b Grams per batch. Same
    results as :class:`~course_lib.cka.MinibatchCKA` (tests/test_cka.py checks it), many times slower.
    """

    def update(self, acts_a, acts_b=None) -> None:
        acts = [x for _, x in self._batch(acts_a, acts_b)]
        acts_a = acts[:self.num_layers_a]
        acts_b = acts_a if self.symmetric else acts[self.num_layers_a:]
        hsic = hsic_unbiased if self.unbiased else hsic_biased
        gram = gram_linear if self.kernel == "linear" else (lambda x: gram_rbf(x, self.sigma))
        ab = torch.empty(len(acts_a), len(acts_b), dtype=torch.float64)
        aa, bb = torch.empty_like(ab), torch.empty_like(ab)
        for i, x in enumerate(acts_a):
            for j, y in enumerate(acts_b):
                K, L = gram(x), gram(y)
                ab[i, j], aa[i, j], bb[i, j] = hsic(K, L), hsic(K, K), hsic(L, L)
        self._accumulate(ab, aa[:, 0], bb[0, :])   # the self terms do not depend on the partner


def main() -> None:
    args = cka_arguments(__doc__.split("\n")[0]).parse_args()
    data, preprocess = cka_images(args)
    torch.manual_seed(0)
    vit, resnet = vit_lite().eval(), resnet18_cifar().eval()
    layers_a = vit_layers(vit)
    layers_b = {**resnet_layers(resnet, "stages"), **resnet_layers(resnet, "convs")}
    print(f"{data.describe()}\nViT-Lite: {len(layers_a)} layers x ResNet-18: {len(layers_b)} layers = "
          f"{len(layers_a) * len(layers_b)} pairs; batch {args.batch_size}; {torch.get_num_threads()} threads")

    fast = MinibatchCKA(len(layers_a), len(layers_b))
    naive = NaiveMinibatchCKA(len(layers_a), len(layers_b))
    t_forward = t_fast = t_naive = 0.0
    with torch.no_grad(), ActivationRecorder(vit, layers_a, flatten=True) as rec_a, \
            ActivationRecorder(resnet, layers_b, flatten=True) as rec_b:
        for start in range(0, len(data), args.batch_size):
            x = preprocess(data.images[start:start + args.batch_size])
            t0 = time.perf_counter()
            vit(x)
            resnet(x)
            recorded_a, recorded_b = rec_a.activations, rec_b.activations
            acts_a, acts_b = [recorded_a[n] for n in layers_a], [recorded_b[n] for n in layers_b]
            t1 = time.perf_counter()
            fast.update(acts_a, acts_b)
            t2 = time.perf_counter()
            naive.update(acts_a, acts_b)
            t3 = time.perf_counter()
            t_forward, t_fast, t_naive = t_forward + t1 - t0, t_fast + t2 - t1, t_naive + t3 - t2
            print(f"  batch {fast.num_batches:2d}: accumulator {t2 - t1:6.2f} s   naive {t3 - t2:7.2f} s", flush=True)
    t0 = time.perf_counter()
    matrix = fast.compute()
    t_fast += time.perf_counter() - t0
    diff = (matrix - naive.compute()).abs().max().item()

    features = sum(a.shape[1] for a in acts_a + acts_b)
    print(f"\n{fast.num_batches} batches, {features:,} features per image over all layers")
    print(f"forward passes (both models): {t_forward:8.2f} s")
    print(f"MinibatchCKA (accumulator):   {t_fast:8.2f} s")
    print(f"NaiveMinibatchCKA (per pair): {t_naive:8.2f} s")
    print(f"speed-up: {t_naive / t_fast:.1f}x   max |difference|: {diff:.2e}")
    print(f"CKA range: {matrix.min().item():.3f} .. {matrix.max().item():.3f}")
    report({"device": device_name("cpu"), "images": len(data), "batch": args.batch_size, "pairs": matrix.numel(),
            "seconds": {"forward": t_forward, "accumulator": t_fast, "naive": t_naive},
            "speedup": t_naive / t_fast, "max_abs_difference": diff}, args.out)


if __name__ == "__main__":
    main()
