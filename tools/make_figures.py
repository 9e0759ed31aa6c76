#!/usr/bin/env python3
"""Write the background chapters' figures into book/figures/ (PNG, 100 dpi), from course_lib.plots.

Usage:
    python tools/make_figures.py                   # all figures into book/figures/
    python tools/make_figures.py --out DIR NAME    # only NAME (e.g. vit-patches) into DIR

Everything comes from the committed real samples (``load_dataset(..., source="samples")``) and fixed seeds, so the
PNGs are the same on every run. They are saved at 100 dpi, as the notebooks' inline backend draws, so a figure
W inches wide is 100·W px and shown at its natural size in the book's 700-px column (see ``course_lib.plots``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("COURSE_OFFLINE", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from course_lib import plots  # noqa: E402
from course_lib.data import load_dataset  # noqa: E402
from course_lib.drloc import relative_targets, sample_positions  # noqa: E402

DPI = 100


def _test_images():
    return load_dataset("cifar10", "test", source="samples")


def _first_of(data, classes: list[str], per_class: int) -> tuple[torch.Tensor, list[str]]:
    """``per_class`` images of each named class, in that order, with their class names."""
    index, names = [], []
    for name in classes:
        c = data.class_names.index(name)
        index += (data.labels == c).nonzero().flatten()[:per_class].tolist()
        names += [name] * per_class
    return data.images[index], names


def _image(data, name: str, i: int = 0) -> torch.Tensor:
    """The ``i``-th image of class ``name`` in ``data``: (3, 32, 32) uint8."""
    return data.images[(data.labels == data.class_names.index(name)).nonzero().flatten()[i]]


def vit_patches():
    """vit.md: one CIFAR-10 image cut into 8 x 8 patches of 4 x 4 pixels, and the token sequence."""
    return plots.plot_patch_tokens(_image(_test_images(), "automobile"), patch_size=4)


def resnet_receptive_field():
    """resnet.md: the receptive field of ResNet-18's centre unit after each convolution."""
    return plots.plot_receptive_fields(_image(_test_images(), "dog", 1))


def rollout_product():
    """rollout.md: Ã_1, Ã_2, their product and the class token's row, for T = 5 tokens (a 2 x 2 grid)."""
    g = torch.Generator().manual_seed(3)
    attentions = [(torch.randn(1, 2, 5, 5, generator=g) * 1.5).softmax(-1) for _ in range(2)]
    return plots.plot_rollout_product(attentions)


def cka_grams():
    """cka.md: two representations of 12 CIFAR-10 images, their centred Gram matrices and their linear CKA."""
    images, names = _first_of(_test_images(), ["airplane", "ship", "cat", "dog", "automobile", "truck"], 2)
    pixels = images.double() / 255                                          # (12, 3, 32, 32): p = 3,072
    coarse = torch.nn.functional.avg_pool2d(pixels, 8)                      # (12, 3, 4, 4): p = 48
    return plots.plot_gram_pair(pixels, coarse, ("pixels", "8×8 mean colours"), names)


def drloc_pairs():
    """drloc.md: six pairs of cells drawn as DRLoc draws them on the 8 x 8 grid, with their targets."""
    k = 8
    pos1, pos2 = sample_positions(1, 6, k, generator=torch.Generator().manual_seed(1))
    targets = relative_targets(pos1, pos2, k)[0]
    return plots.plot_drloc_pairs(_image(_test_images(), "horse"), pos1[0], pos2[0], k, targets, size=5.0)


FIGURES: dict[str, Callable] = {
    "vit-patches": vit_patches,
    "resnet-receptive-field": resnet_receptive_field,
    "rollout-product": rollout_product,
    "cka-grams": cka_grams,
    "drloc-pairs": drloc_pairs,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"figures to write (default: all of {', '.join(FIGURES)})")
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "figures", help="folder (default book/figures)")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s) {sorted(unknown)}; choose from {list(FIGURES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    plt.rcParams["svg.hashsalt"] = "course"        # no random ids in any output
    for name in args.names or FIGURES:
        torch.manual_seed(0)
        fig = FIGURES[name]()
        path = args.out / f"{name}.png"
        fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
