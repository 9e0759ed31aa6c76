"""A data loader that keeps the whole data set on the device and augments whole batches there.

On a Colab GPU with 2 CPU cores, per-image PIL transforms in worker processes cannot keep up with the GPU. Here the
uint8 images are copied to the device once (CIFAR-10 is 150 MB); every batch is gathered, augmented and
preprocessed there. Randomness comes from a CPU generator seeded with ``(seed, epoch)``, so an epoch is the same on
any device and after a resume.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from .. import augment as aug
from .preprocess import Preprocessing

if TYPE_CHECKING:     # names used only in annotations
    from .sets import ImageSet

__all__ = ["GPULoader"]


class GPULoader:
    """Batches of an :class:`ImageSet` with the whole data set resident on ``device``.

    Args:
        data: the images (uint8) and labels.
        batch_size: images per batch.
        train: shuffle and augment (unless ``augment=False``); evaluation keeps the order and the pixels.
        augment: random crop with zero padding ``pad`` and horizontal flip (``hflip``: default the data set's
            rule, no flips for SVHN's digits), done in one batched gather.
        randaugment: a timm-style RandAugment policy, e.g. ``"rand-m9-mstd0.5-inc1"`` (None: off), applied to the
            cropped uint8 images.
        random_erasing: probability of erasing a random rectangle of each (preprocessed) image with noise.
        preprocess: uint8 -> float; default the data set's standardisation.
        drop_last: drop a ragged last batch (the caller's rule: :func:`course_lib.train.fit` follows
            :func:`course_lib.recipes.drops_ragged_batch`).
        channels_last: NHWC memory layout for convolutional models.

    Yields:
        (images float32 (B, 3, H, W), labels int64 (B,)) on ``device``.
    """

    def __init__(self, data: ImageSet, batch_size: int, device: str | torch.device = "cpu", train: bool = False,
                 augment: bool | None = None, hflip: bool | None = None, pad: int = 4,
                 preprocess: Preprocessing | None = None, randaugment: str | None = None,
                 random_erasing: float = 0.0, drop_last: bool = False, seed: int = 0,
                 channels_last: bool = False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number of at least 1, got {batch_size!r}.")
        if len(data) == 0:
            raise ValueError("Cannot build a loader over an empty ImageSet.")
        if not 0.0 <= random_erasing <= 1.0:
            raise ValueError(f"random_erasing is a probability in [0, 1], got {random_erasing}.")
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.batch_size, self.train, self.seed, self.channels_last = batch_size, train, seed, channels_last
        self.augment = train if augment is None else augment
        self.hflip = data.info.hflip if hflip is None else hflip
        self.pad = pad
        self.randaugment = randaugment if self.augment else None
        self.random_erasing = random_erasing if self.augment else 0.0
        self.preprocess = preprocess if preprocess is not None else Preprocessing.for_dataset(data.dataset)
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=generator) if self.train else torch.arange(n)
        shifts = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5
        order, shifts, flips = order.to(self.device), shifts.to(self.device), flips.to(self.device) & self.hflip
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment:
                x = aug.random_crop_flip(x, shifts[idx], flips[idx], self.pad)
            if self.randaugment:
                x = aug.rand_augment(x, self.randaugment, generator)
            x = self.preprocess(x)
            if self.random_erasing:
                x = aug.random_erasing(x, self.random_erasing, generator)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
