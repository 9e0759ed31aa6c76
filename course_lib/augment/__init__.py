"""Data augmentation on whole batches, on the device that holds them (no PIL, no worker processes).

Shapes: images (B, C, H, W); uint8 in [0, 255] unless a function says it takes standardised floats.

Every random number comes from the CPU ``torch.Generator`` a function is given (and is then moved to the images'
device), so a batch is augmented the same way on any device and after a resume. Each augmentation is drawn per image
but applied to all the images that drew it at once: a loop over op types, never over images.

One module per concept, as timm separates them (huggingface/pytorch-image-models, commit 066e4906, the library behind
the official code of Liu et al. 2021):

=========================  ========================================  =============================================
:mod:`.crop`               :func:`random_crop_flip`                  random crop with zero padding, horizontal flip
:mod:`.auto_augment`       :func:`rand_augment`                      ``timm/data/auto_augment.py``: RandAugment
:mod:`.erasing`            :func:`random_erasing`                    ``timm/data/random_erasing.py``
:mod:`.mixup`              :func:`mixup_cutmix`,                     ``timm/data/mixup.py``,
                           :func:`soft_target_cross_entropy`         ``timm/loss/cross_entropy.py``
=========================  ========================================  =============================================

timm runs its ops through PIL; the ops here reproduce PIL's integer arithmetic (named per op), so that the tests can
hold them to PIL itself.
"""
from .auto_augment import rand_augment
from .crop import random_crop_flip
from .erasing import random_erasing
from .mixup import mixup_cutmix, soft_target_cross_entropy

__all__ = ["random_crop_flip", "rand_augment", "random_erasing", "mixup_cutmix", "soft_target_cross_entropy"]
