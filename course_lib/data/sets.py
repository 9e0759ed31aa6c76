"""What a data set is (:class:`DatasetInfo`, :class:`ImageSet`) and how to cut small-data subsets from one."""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

__all__ = ["DatasetInfo", "DATASETS", "ImageSet", "DataUnavailableError", "OfflineSamplesWarning",
           "OverlappingTestSetWarning", "check_dataset_name", "check_test_set", "subset", "take", "first_of_each_class",
           "SAMPLES_DIR", "STAND_IN"]

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"    # the real images that ship with the package
# In the source of SVHN's committed "test" samples, which are official *training* images (see load_samples).
STAND_IN = "STAND-IN test set"


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about a data set: number of classes, per-channel mean/std (of the training split, in [0, 1] units),
    whether a horizontal flip is a valid augmentation (not for digits), and the official split sizes."""

    name: str
    title: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    hflip: bool
    sizes: dict = field(default_factory=dict)


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", "CIFAR-10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True,
                           {"train": 50000, "test": 10000}),
    "cifar100": DatasetInfo("cifar100", "CIFAR-100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True,
                            {"train": 50000, "test": 10000}),
    # Flipping a digit makes another symbol (2 <-> S-like shapes), so the course recipe does not flip SVHN.
    "svhn": DatasetInfo("svhn", "SVHN", 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), False,
                        {"train": 73257, "test": 26032}),
}


class DataUnavailableError(RuntimeError):
    """The requested copy of a data set is not on disk and cannot be downloaded."""


class OfflineSamplesWarning(UserWarning):
    """The full data set was not available, so the small committed samples are used instead."""


class OverlappingTestSetWarning(UserWarning):
    """The test set shares images with the training set, so its accuracy measures memorisation, not generalisation."""


def check_dataset_name(name: str, split: str = "train") -> str:
    """``name`` if it is a known data set and ``split`` is "train" or "test"; else a ValueError naming the choices."""
    if name not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}. Choose one of {sorted(DATASETS)}.")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}.")
    return name


@dataclass
class ImageSet:
    """A labelled set of images held as tensors.

    Attributes:
        images: uint8 (N, 3, H, W).
        labels: int64 (N,), each in [0, number of classes).
        dataset: key in :data:`DATASETS` ("cifar10", "cifar100", "svhn").
        split: "train" or "test".
        class_names: one name per class.
        source: which copy of the data this is, in words (quoted in results).
        indices: int64 (N,) positions in the official split when known, else None.
    """

    images: torch.Tensor
    labels: torch.Tensor
    dataset: str
    split: str
    class_names: list[str]
    source: str
    indices: torch.Tensor | None = None
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)   # not copied by select

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"ImageSet.images must be uint8 (N, 3, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}.")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels.")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)):
            raise ValueError(f"Labels of {self.dataset} {self.split} ({self.source}) run from "
                             f"{int(self.labels.min())} to {int(self.labels.max())}, but there are "
                             f"{len(self.class_names)} classes: labels must lie in [0, {len(self.class_names)}). "
                             "The file is damaged or belongs to another data set; reload it from its source.")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def info(self) -> DatasetInfo:
        return DATASETS[self.dataset]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def index_split(self) -> str:
        """The official split that ``indices`` point into: ``split``, except for SVHN's stand-in test samples,
        which are official training images."""
        return "train" if self.split == "test" and STAND_IN in self.source else self.split

    def class_counts(self) -> torch.Tensor:
        """Images per class, (num_classes,)."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def select(self, index: torch.Tensor, note: str = "") -> "ImageSet":
        """The images at ``index`` (a 1-D index tensor), with ``note`` appended to ``source``."""
        return replace(self, images=self.images[index], labels=self.labels[index],
                       indices=None if self.indices is None else self.indices[index],
                       source=self.source + (f"; {note}" if note else ""))

    def fingerprint(self) -> str:
        """A short hash of the pixels and labels, ``"<N>:<16 hex digits>"``: two sets agree only if every image and
        label does. Computed once (the tensors are not expected to change in place afterwards)."""
        if self._fingerprint is None:
            digest = hashlib.sha256(self.images.contiguous().cpu().numpy().tobytes())
            digest.update(self.labels.cpu().numpy().astype("int64").tobytes())
            self._fingerprint = f"{len(self)}:{digest.hexdigest()[:16]}"
        return self._fingerprint

    def describe(self) -> str:
        return f"{self.info.title} {self.split}: {len(self):,} images ({self.source})"


def _shared_images(train_data: ImageSet, test_data: ImageSet) -> int:
    """How many test images are training images: all of them for the same pixels and labels, else those at the
    same official index of the same split (0 when the sets do not say where their images come from)."""
    if train_data.fingerprint() == test_data.fingerprint():
        return len(test_data)
    if train_data.indices is None or test_data.indices is None or train_data.index_split != test_data.index_split:
        return 0
    return int(torch.isin(test_data.indices, train_data.indices).sum())


def check_test_set(train_data: ImageSet, test_data: ImageSet, stacklevel: int = 1) -> None:
    """Refuse (ValueError) a test set of another data set than the training set. One that shares images with the
    training set (the same set, or overlapping official indices) is allowed, e.g. to show memorisation, but warned
    about loudly with a :class:`OverlappingTestSetWarning`: its accuracy is not a test accuracy. ``stacklevel``: the
    warning names the line ``stacklevel`` calls up (1: the caller of this function)."""
    if test_data.dataset != train_data.dataset:
        raise ValueError(f"The test set is {test_data.info.title} {test_data.split} but the model trains on "
                         f"{train_data.info.title} {train_data.split}: its accuracy would measure nothing (its "
                         f"labels mean other things). Pass the test split of the same data set, e.g. "
                         f"load_dataset({train_data.dataset!r}, 'test').")
    shared = _shared_images(train_data, test_data)
    if shared:
        whole = "IS the training set" if shared == len(test_data) == len(train_data) else \
            f"shares {shared:,} of its {len(test_data):,} images with the training set"
        warnings.warn(f"\n*** The test set ({test_data.describe()}) {whole}: its accuracy measures memorisation, "
                      f"not how well the model generalises. Pass the test split, e.g. load_dataset("
                      f"{train_data.dataset!r}, 'test'), for a test accuracy. ***", OverlappingTestSetWarning,
                      stacklevel=stacklevel + 1)


# --------------------------------------------------------------------------------------------------------------
# Small-data subsets

def subset(data: ImageSet, n_per_class: int, seed: int = 0, allow_fewer: bool = False) -> ImageSet:
    """A stratified, deterministic subset: ``n_per_class`` images of every class.

    The images of each class are shuffled with ``seed`` and the first ``n_per_class`` kept, so for one seed the
    subsets are nested: ``subset(d, 50)`` is contained in ``subset(d, 100)``. The result keeps the original order.

    Args:
        allow_fewer: take all images of a class that has fewer than ``n_per_class`` instead of raising.
    """
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"n_per_class must be a whole number of at least 1, got {n_per_class!r}.")
    counts = data.class_counts()
    if not allow_fewer and int(counts.min()) < n_per_class:
        short = int(counts.argmin())
        raise ValueError(f"subset asks for {n_per_class} images per class, but class {data.class_names[short]!r} "
                         f"has only {int(counts[short])} in this copy of {data.info.title} {data.split} "
                         f"({data.source}). Ask for at most {int(counts.min())}, pass allow_fewer=True, or load the "
                         "full data set.")
    return data.select(_subset_positions(data, n_per_class, seed), f"subset of {n_per_class} per class (seed {seed})")


def _subset_positions(data: ImageSet, n_per_class: int, seed: int) -> torch.Tensor:
    """Positions (sorted) of :func:`subset`'s draw: each class shuffled with ``seed``, its first ``n_per_class``."""
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(data.num_classes):
        members = torch.nonzero(data.labels == c).flatten()
        keep.append(members[torch.randperm(len(members), generator=generator)[:n_per_class]])
    return torch.cat(keep).sort().values


def hold_out(data: ImageSet, n_per_class: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """(the rest, the held-out part): ``n_per_class`` images of every class set aside with ``seed`` (a
    :func:`subset`), the same draw every time, so a validation split never overlaps what is trained on."""
    held = subset(data, n_per_class, seed=seed)          # validates n_per_class and the class counts
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[_subset_positions(data, n_per_class, seed)] = False
    return data.select(torch.nonzero(keep).flatten(), f"{n_per_class} per class held out (seed {seed})"), held


def take(data: ImageSet, n: int | None, seed: int = 0) -> ImageSet:
    """``n`` images chosen at random with ``seed`` (all of them if ``n`` is None or too large), in original order."""
    if n is None:
        return data
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"take() needs a whole number of images of at least 1 (or None for all), got {n!r}.")
    if n >= len(data):
        return data
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return data.select(index, f"{n} images (seed {seed})")


def first_of_each_class(data: ImageSet, n: int | None = None) -> ImageSet:
    """The first image of each of the first ``n`` classes (default: all), in class order, for figures."""
    classes = range(data.num_classes if n is None else min(n, data.num_classes))
    index = [int(torch.nonzero(data.labels == c)[0]) for c in classes if bool((data.labels == c).any())]
    return data.select(torch.tensor(index, dtype=torch.long), "first image of each class")
