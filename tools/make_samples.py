"""Build the real-image samples committed in ``course_lib/samples/`` from ``../shared/data/samples``.

Run once by a maintainer (``python tools/make_samples.py ../shared/data/samples``); users never need it.
Every image keeps its exact pixels and its index in the official split (torchvision's order).

What is kept, and why:
- CIFAR-10 train: the first 200 images of each class (2,000) from the exact prefix, in two shards under 5 MB each.
- CIFAR-10 test: the stratified sample, 87 per class (870).
- CIFAR-100 train: indices 0..1116 (5-22 per class); test: indices 0..915 (4-15 per class).
- SVHN: only *train* images were obtainable. 20 per class (200) become a stand-in test split; the other 883 images
  are the train split. Loaders say so whenever they use it.
- All CIFAR-10 labels (60,000), needed to rebuild the official order of the CIFAR-10 JPEG copy, and all CIFAR-100
  fine labels, with which a downloaded copy's order is checked label by label.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "course_lib" / "samples"


def save(name: str, images, labels, indices, class_names) -> None:
    np.savez_compressed(OUT / f"{name}.npz", images=images, labels=labels.astype(np.int64),
                        indices=indices.astype(np.int64), class_names=np.asarray(class_names))
    print(f"{name}: {len(labels)} images, {(OUT / f'{name}.npz').stat().st_size / 1e6:.2f} MB")


def first_per_class(labels: np.ndarray, n: int) -> np.ndarray:
    keep = np.concatenate([np.flatnonzero(labels == c)[:n] for c in np.unique(labels)])
    return np.sort(keep)


def main(src: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    d = np.load(src / "cifar10_train_exact_prefix.npz")
    keep = first_per_class(d["labels"], 200)
    halves = np.array_split(keep, 2)
    for part, idx in enumerate(halves):
        save(f"cifar10_train_{part}", d["images"][idx], d["labels"][idx], d["indices"][idx], d["class_names"])
    d = np.load(src / "cifar10_test_sample.npz")
    save("cifar10_test_0", d["images"], d["labels"], d["indices"], d["class_names"])
    for split, f in [("train", "cifar100_train_first1117"), ("test", "cifar100_test_sample")]:
        d = np.load(src / f"{f}.npz")
        save(f"cifar100_{split}_0", d["images"], d["labels"], d["indices"], d["class_names"])
    d = np.load(src / "svhn_train_first1083.npz")
    rng = np.random.default_rng(0)
    test = np.sort(np.concatenate([rng.choice(np.flatnonzero(d["labels"] == c), 20, replace=False)
                                   for c in range(10)]))
    train = np.setdiff1d(np.arange(len(d["labels"])), test)
    for split, idx in [("train", train), ("test", test)]:
        save(f"svhn_{split}_0", d["images"][idx], d["labels"][idx], d["indices"][idx], d["class_names"])
    labels = np.load(src / "cifar10_all_labels.npz")
    np.savez_compressed(OUT / "cifar10_all_labels.npz", train=labels["train"], test=labels["test"])
    fine = np.load(src / "cifar100_all_labels.npz")      # checks a downloaded CIFAR-100 copy's order, label by label
    np.savez_compressed(OUT / "cifar100_all_labels.npz", train=fine["train_fine"].astype(np.int64),
                        test=fine["test_fine"].astype(np.int64))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/samples"))
