"""Data augmentation on whole batches, on the device that holds them (no PIL, no worker processes).

Shapes: images (B, C, H, W); uint8 in [0, 255] unless a function says it takes standardised floats.

Every random number comes from the CPU ``torch.Generator`` a function is given (and is then moved to the images'
device), so a batch is augmented the same way on any device and after a resume. Each augmentation is drawn per image
but applied to all the images that drew it at once: a loop over op types, never over images.

The RandAugment, random-erasing and mixup/CutMix recipes are timm's (huggingface/pytorch-image-models, commit
066e4906), the library behind the official code of Liu et al. (2021):

* ``timm/data/auto_augment.py``: ``rand_augment_transform`` (the policy string), ``RandAugment.__call__`` (``n`` ops
  drawn uniformly with replacement), ``AugmentOp.__call__`` (probability 0.5, magnitude noise, clip to [0, 10]),
  ``_RAND_TRANSFORMS`` / ``_RAND_INCREASING_TRANSFORMS``, the ``_*_level_to_arg`` mappings and the PIL calls they feed;
* ``timm/data/random_erasing.py``: ``RandomErasing._erase``;
* ``timm/data/mixup.py``: ``Mixup._params_per_batch`` / ``_mix_batch``, ``rand_bbox``, ``cutmix_bbox_and_lam``,
  ``mixup_target``; ``timm/loss/cross_entropy.py``: ``SoftTargetCrossEntropy``.

timm runs its ops through PIL; the ops here reproduce PIL's integer arithmetic (named per op), so that the tests can
hold them to PIL itself.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["random_crop_flip", "rand_augment", "random_erasing", "mixup_cutmix", "soft_target_cross_entropy"]


def random_crop_flip(images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Batched random crop (zero padding ``pad``) and horizontal flip in one gather.

    Args:
        images: (B, C, H, W), any dtype.
        shifts: (B, 2) integer offsets in [0, 2*pad] for rows and columns of the padded image.
        flips: (B,) bool, mirror those images left-right.
    Returns:
        (B, C, H, W): ``out[b] = flip?(pad(images[b])[:, dy:dy+H, dx:dx+W])``.
    """
    B, C, H, W = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    ar_h = torch.arange(H, device=images.device)
    ar_w = torch.arange(W, device=images.device)
    rows = shifts[:, :1] + ar_h                                            # (B, H)
    cols = shifts[:, 1:] + torch.where(flips[:, None], ar_w.flip(0), ar_w)  # (B, W), reversed when flipped
    b = torch.arange(B, device=images.device).view(B, 1, 1, 1)
    c = torch.arange(C, device=images.device).view(1, C, 1, 1)
    return padded[b, c, rows.view(B, 1, H, 1), cols.view(B, 1, 1, W)]


# ----------------------------------------------------------------------------------------------------------------
# RandAugment ops: uint8 (b, 3, H, W) and a per-image argument (b,) float64 on the CPU -> uint8 (b, 3, H, W).

# Colour of the pixels that geometric ops bring in from outside the image. timm uses ``img_mean`` = round(255 * the
# normalisation mean); Swin and DeiT (and so DRLoc) pass ImageNet's mean for every data set, CIFAR included.
FILL = (124, 116, 104)
_LEVEL_DENOM = 10.0  # timm's magnitude scale: 'm10' is the strongest setting


def _per_image(values: torch.Tensor, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(b,) values -> (b, 1, 1, 1) of ``dtype`` on ``like``'s device, to broadcast over (b, C, H, W)."""
    return values.to(device=like.device, dtype=dtype).view(-1, 1, 1, 1)


def _apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """uint8 (b, C, H, W) through one table per image and channel, lut (b, C, 256) -> uint8 (b, C, H, W)."""
    b, c = x.shape[:2]
    return lut.to(torch.uint8).gather(2, x.reshape(b, c, -1).long()).view_as(x)


def _invert(x: torch.Tensor, _arg: None) -> torch.Tensor:
    return 255 - x


def _posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top ``bits`` bits (ImageOps.posterize). 0 bits is black, as Pillow < 10 gave for timm's m=10."""
    keep = bits.clamp(0, 8).long()
    mask = torch.bitwise_left_shift(torch.full_like(keep, 0xFF), 8 - keep) & 0xFF
    return x & _per_image(mask, x, torch.uint8)


def _solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert pixels >= threshold (ImageOps.solarize); int16 because timm's threshold reaches 256."""
    return torch.where(x.to(torch.int16) >= _per_image(threshold, x, torch.int16), 255 - x, x)


def _solarize_add(x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """timm's solarize_add: pixels below 128 get ``add``, saturating at 255."""
    added = (x.to(torch.int16) + _per_image(add, x, torch.int16)).clamp(0, 255).to(torch.uint8)
    return torch.where(x < 128, added, x)


def _auto_contrast(x: torch.Tensor, _arg: None) -> torch.Tensor:
    """ImageOps.autocontrast (cutoff 0): stretch each channel's [lo, hi] to [0, 255], int() of a float64 ramp."""
    lo = x.amin(dim=(2, 3)).double()[..., None]                            # (b, C, 1)
    hi = x.amax(dim=(2, 3)).double()[..., None]
    ramp = torch.arange(256, dtype=torch.float64, device=x.device)
    # Tensor division, not ``255.0 / tensor`` (a reciprocal times 255, which rounds differently from PIL's loop).
    scale = torch.full_like(lo, 255.0) / (hi - lo).clamp(min=1)
    lut = (ramp * scale + (-lo * scale)).trunc().clamp(0, 255)             # PIL's float64 operations, in order
    return _apply_lut(x, torch.where(hi > lo, lut, ramp))                  # a flat channel stays as it is


def _equalize(x: torch.Tensor, _arg: None) -> torch.Tensor:
    """ImageOps.equalize per image and channel, from 256-bin histograms in exact integer arithmetic."""
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1).long()
    hist = torch.zeros(b, c, 256, dtype=torch.long, device=x.device).scatter_add_(2, flat, torch.ones_like(flat))
    last = 255 - (hist.flip(-1) > 0).int().argmax(-1, keepdim=True)       # the brightest occupied bin
    step = (flat.shape[-1] - hist.gather(2, last)) // 255                  # PIL leaves that bin out of the step
    below = hist.cumsum(-1) - hist                                         # pixels darker than each value
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp(max=255)
    ramp = torch.arange(256, device=x.device)
    return _apply_lut(x, torch.where(step > 0, lut, ramp))                # step 0 (e.g. one value): unchanged


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Image.blend(degenerate, x, factor) as PIL's Blend.c: float32 d + f (x - d), clipped, truncated to uint8."""
    d = degenerate.float()
    return (d + _per_image(factor, x, torch.float32) * (x.float() - d)).clamp_(0, 255).trunc_().to(torch.uint8)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """uint8 (b, 3, H, W) -> int64 (b, 1, H, W): PIL's RGB -> L, (19595 R + 38470 G + 7471 B + 2**15) >> 16."""
    weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32, device=x.device).view(1, 3, 1, 1)
    return ((x.int() * weights).sum(1, keepdim=True) + 32768) >> 16


def _color(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Color: blend with the grey image."""
    return _blend(_grey(x).expand_as(x), x, factor)


def _contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Contrast: blend with a flat image at the grey image's mean, rounded half up."""
    grey = _grey(x)
    mean = (grey.sum(dim=(1, 2, 3)).double() / grey[0].numel() + 0.5).floor()
    return _blend(mean.view(-1, 1, 1, 1).expand_as(x), x, factor)


def _brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Brightness: blend with black."""
    return _blend(torch.zeros_like(x), x, factor)


def _sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Sharpness: blend with ImageFilter.SMOOTH, kernel [[1,1,1],[1,5,1],[1,1,1]] / 13.

    PIL's 3x3 filter (Filter.c) rounds half up and copies the border pixels, so the border never changes. The sums
    are integers below 2**12, exact in float32, and (s + 6.5) / 13 is never within 0.5 / 13 of an integer.
    """
    c = x.shape[1]
    degenerate = x.clone()
    if min(x.shape[-2:]) >= 3:                                             # else every pixel is a border pixel
        kernel = torch.ones(c, 1, 3, 3, device=x.device)
        kernel[:, :, 1, 1] = 5.0
        smooth = F.conv2d(x.float(), kernel, groups=c).add_(6.5).div_(13).floor_()
        degenerate[..., 1:-1, 1:-1] = smooth.to(torch.uint8)
    return _blend(degenerate, x, factor)


def _affine(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Image.transform(AFFINE, matrix, BILINEAR, fillcolor=FILL) on a batch.

    timm resamples with the ``interpolation`` its transforms factory passes (bicubic in the Swin / DeiT configs;
    bilinear or bicubic at random without one). Bilinear is kept here: one of timm's two modes, no overshoot to
    clip, and within a grey level of PIL (see the tests), where PIL's bicubic (a = -1) and grid_sample's
    (a = -0.75) differ.

    Args:
        matrix: (b, 2, 3) float64 on the CPU: PIL's coefficients, mapping a point of the output (pixel units,
            pixel (i, j) spans [j, j+1) x [i, i+1)) to the point of the input it samples.
    Returns:
        uint8 (b, C, H, W). As PIL's Geometry.c: a pixel whose source point lies outside the input takes FILL;
        the others are bilinear with neighbours clamped at the edge (padding 'border'), truncated to uint8.
    """
    b, c, h, w = x.shape
    half = torch.tensor([w / 2, h / 2], dtype=torch.float64)               # pixel units -> [-1, 1] (no corners)
    linear = matrix[:, :, :2] * half / half[:, None]
    shift = (matrix[:, :, :2] @ half + matrix[:, :, 2]) / half - 1
    theta = torch.cat([linear, shift[..., None]], dim=2).to(x.device)
    # float64 so that results PIL computes as exact integers (flat areas, whole-pixel offsets) stay exact.
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    inside = ((grid >= -1) & (grid < 1)).all(-1).unsqueeze(1)
    sampled = F.grid_sample(x.double(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    fill = torch.tensor(FILL, dtype=torch.float64, device=x.device).view(1, c, 1, 1)
    return torch.where(inside, sampled.add_(1e-7).floor_(), fill).to(torch.uint8)


def _affine_rows(*entries: torch.Tensor | float) -> torch.Tensor:
    """Six per-image coefficients (scalars or (b,) float64) -> PIL's matrices (b, 2, 3)."""
    b = max(e.numel() for e in entries if isinstance(e, torch.Tensor))
    columns = [e if isinstance(e, torch.Tensor) else torch.full((b,), float(e), dtype=torch.float64) for e in entries]
    return torch.stack(columns, dim=1).view(b, 2, 3)


def _rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Image.rotate(degrees): anticlockwise about the centre (W/2, H/2)."""
    cx, cy = x.shape[-1] / 2, x.shape[-2] / 2
    angle = -torch.deg2rad(degrees)
    cos, sin = angle.cos(), angle.sin()
    return _affine(x, _affine_rows(cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy))


def _shear_x(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _affine(x, _affine_rows(1, factor, 0, 0, 1, 0))


def _shear_y(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _affine(x, _affine_rows(1, 0, 0, factor, 1, 0))


def _translate_x(x: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """timm's translate_x_rel: shift by ``fraction`` of the width (positive: content moves left)."""
    return _affine(x, _affine_rows(1, 0, fraction * x.shape[-1], 0, 1, 0))


def _translate_y(x: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    return _affine(x, _affine_rows(1, 0, 0, 0, 1, fraction * x.shape[-2]))


# Magnitude (b,) float64 on timm's 0..10 scale and sign (b,) of +-1 (timm's _randomly_negate) -> op argument (b,).
# The operations are timm's, in its order, so float64 gives the same numbers as its Python floats.

def _signed(limit: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Rotate, shear, translate: +-limit * m / 10."""
    return lambda m, sign: sign * ((m / _LEVEL_DENOM) * limit)


def _truncated(limit: int, decreasing: bool = False) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Posterize bits and solarize thresholds (int(m / 10 * limit)); 'Increasing' ops count down from ``limit``."""
    def level(m: torch.Tensor, _sign: torch.Tensor) -> torch.Tensor:
        value = ((m / _LEVEL_DENOM) * limit).trunc()
        return limit - value if decreasing else value
    return level


def _enhance_factor(m: torch.Tensor, _sign: torch.Tensor) -> torch.Tensor:
    """Colour, contrast, brightness, sharpness: 0.1 .. 1.9 growing with m."""
    return (m / _LEVEL_DENOM) * 1.8 + 0.1


def _enhance_increasing_factor(m: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """The 'Increasing' variants: 1 +- 0.9 m / 10, at least 0.1 (m = 0 leaves the image as it is)."""
    return (1.0 + sign * ((m / _LEVEL_DENOM) * 0.9)).clamp(min=0.1)


_Op = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]
_Level = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# The one table of ops: timm's name -> (op, magnitude -> argument; None for ops without one).
_OPS: dict[str, tuple[_Op, _Level | None]] = {
    "AutoContrast": (_auto_contrast, None),
    "Equalize": (_equalize, None),
    "Invert": (_invert, None),
    "Rotate": (_rotate, _signed(30.0)),
    "Posterize": (_posterize, _truncated(4)),
    "PosterizeIncreasing": (_posterize, _truncated(4, decreasing=True)),   # 4 bits at m=0 down to 0 at m=10
    "Solarize": (_solarize, _truncated(256)),
    "SolarizeIncreasing": (_solarize, _truncated(256, decreasing=True)),    # threshold 256 (no change) at m=0
    "SolarizeAdd": (_solarize_add, _truncated(110)),
    "Color": (_color, _enhance_factor),
    "ColorIncreasing": (_color, _enhance_increasing_factor),
    "Contrast": (_contrast, _enhance_factor),
    "ContrastIncreasing": (_contrast, _enhance_increasing_factor),
    "Brightness": (_brightness, _enhance_factor),
    "BrightnessIncreasing": (_brightness, _enhance_increasing_factor),
    "Sharpness": (_sharpness, _enhance_factor),
    "SharpnessIncreasing": (_sharpness, _enhance_increasing_factor),
    "ShearX": (_shear_x, _signed(0.3)),
    "ShearY": (_shear_y, _signed(0.3)),
    "TranslateXRel": (_translate_x, _signed(0.45)),   # timm's translate_pct default
    "TranslateYRel": (_translate_y, _signed(0.45)),
}

# timm's op sets, in timm's order ('Cutout' is left out there too: random erasing does that job).
_RAND_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
                    "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_RAND_INCREASING_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                               "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                               "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel",
                               "TranslateYRel")


def _apply_op(images: torch.Tensor, name: str, magnitude: float | torch.Tensor = 0.0,
              sign: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Apply op ``name`` to every image, with no randomness: the entry point the tests force each op through.

    Args:
        images: uint8 (B, 3, H, W).
        magnitude: timm's 0..10 scale, a number or (B,).
        sign: +1 or -1 (timm's random negation of rotate, shear, translate and the 'Increasing' enhance factors).
    Returns:
        uint8 (B, 3, H, W).
    """
    if name not in _OPS:
        raise ValueError(f"Unknown RandAugment op {name!r}; the ops are {sorted(_OPS)}.")
    op, level = _OPS[name]
    b = images.shape[0]
    m = torch.as_tensor(magnitude, dtype=torch.float64, device="cpu").expand(b)
    s = torch.as_tensor(sign, dtype=torch.float64, device="cpu").expand(b)
    return op(images, None if level is None else level(m, s))


# ----------------------------------------------------------------------------------------------------------------
# RandAugment policy

@dataclass(frozen=True)
class _Policy:
    ops: tuple[str, ...]
    num_layers: int = 2           # timm's default
    magnitude: float = _LEVEL_DENOM
    magnitude_std: float = 0.0    # inf: uniform in [0, magnitude]
    magnitude_max: float = _LEVEL_DENOM
    prob: float = 0.5             # timm's rand_augment_ops: each chosen op is applied with probability 0.5


_POLICY_HELP = ("Write a timm RandAugment policy such as 'rand-m9-mstd0.5-inc1': 'rand', then dash-separated "
                "m<magnitude 0..10>, n<ops per image>, mstd<magnitude noise std>, mmax<magnitude clip>, inc<0 or 1>.")


def _parse_policy(policy: str) -> _Policy:
    """Read a timm policy string (rand_augment_transform). Unlike timm, 'inc0' means the plain op set (timm's
    ``bool('0')`` is True) and sections timm would skip or assert on raise a ValueError naming the fix."""
    sections = policy.split("-") if isinstance(policy, str) else []
    if not sections or sections[0] != "rand":
        raise ValueError(f"Bad RandAugment policy {policy!r}. {_POLICY_HELP}")
    values: dict[str, float] = {}
    for section in sections[1:]:
        match = re.fullmatch(r"([a-z]+)(\d+(?:\.\d*)?)", section)
        if match is None or match[1] not in ("m", "n", "mstd", "mmax", "inc"):
            hint = " Weighted op choice (w) is not supported: drop it." if section.startswith("w") else ""
            raise ValueError(f"Bad section {section!r} in RandAugment policy {policy!r}.{hint} {_POLICY_HELP}")
        if match[1] != "mstd" and "." in match[2]:
            raise ValueError(f"Section {section!r} of {policy!r} takes a whole number. {_POLICY_HELP}")
        values[match[1]] = float(match[2])
    std = values.get("mstd", 0.0)
    return _Policy(ops=_RAND_INCREASING_TRANSFORMS if values.get("inc", 0) else _RAND_TRANSFORMS,
                   num_layers=int(values.get("n", 2)), magnitude=values.get("m", _LEVEL_DENOM),
                   magnitude_std=math.inf if std > 100 else std,   # timm: mstd > 100 means uniform sampling
                   magnitude_max=values.get("mmax", _LEVEL_DENOM))


def _sample_magnitudes(policy: _Policy, b: int, generator: torch.Generator) -> torch.Tensor:
    """(b,) float64: timm's AugmentOp magnitude, with Gaussian (or uniform) noise per application, clipped."""
    m = torch.full((b,), policy.magnitude, dtype=torch.float64)
    if math.isinf(policy.magnitude_std):
        m = torch.rand(b, generator=generator, dtype=torch.float64) * policy.magnitude
    elif policy.magnitude_std > 0:
        m = m + policy.magnitude_std * torch.randn(b, generator=generator, dtype=torch.float64)
    return m.clamp(0.0, policy.magnitude_max)


def _check_uint8_rgb(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 \
            or images.shape[1] != 3:
        what = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"rand_augment expects uint8 RGB images (B, 3, H, W), got {what}: apply it before "
                        f"Preprocessing converts them to floats.")


def rand_augment(images: torch.Tensor, policy: str, generator: torch.Generator) -> torch.Tensor:
    """timm's RandAugment (``rand_augment_transform(policy)``) on a batch.

    Each image draws ``n`` ops uniformly with replacement; each drawn op is applied with probability 0.5, at a
    magnitude with fresh noise and, where timm negates at random, a fresh sign. All images that drew the same op
    in the same round are transformed together.

    Args:
        images: uint8 (B, 3, H, W) on any device (not modified).
        policy: e.g. ``"rand-m9-mstd0.5-inc1"`` (magnitude 9, noise std 0.5, timm's 'increasing' op set, 2 ops).
        generator: CPU generator all the randomness comes from.
    Returns:
        uint8 (B, 3, H, W) on the images' device.
    """
    _check_uint8_rgb(images)
    p = _parse_policy(policy)
    b, out = images.shape[0], images.clone()
    for _ in range(p.num_layers):
        choice = torch.randint(len(p.ops), (b,), generator=generator)
        applied = torch.rand(b, generator=generator, dtype=torch.float64) < p.prob
        magnitude = _sample_magnitudes(p, b, generator)
        sign = torch.where(torch.rand(b, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0)
        for k, name in enumerate(p.ops):
            rows = torch.nonzero(applied & (choice == k)).squeeze(1)       # on the CPU: no device sync
            if len(rows):
                on_device = rows.to(images.device)
                out[on_device] = _apply_op(out[on_device], name, magnitude[rows], sign[rows])
    return out


# ----------------------------------------------------------------------------------------------------------------
# Random erasing

def _erasing_boxes(b: int, h: int, w: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """(b, 4) int64 on the CPU: top, left, height, width of each image's box (height = width = 0: none).

    timm's RandomErasing._erase with max_count 1: erase with ``probability``; up to 10 tries of an area uniform in
    [0.02, 1/3] of the image and an aspect ratio log-uniform in [0.3, 1/0.3], sides rounded half to even (Python's
    round); the first box smaller than the image on both sides is placed uniformly.
    """
    erase = torch.rand(b, generator=generator, dtype=torch.float64) < probability
    area = torch.empty(b, 10, dtype=torch.float64).uniform_(0.02, 1 / 3, generator=generator) * (h * w)
    log_ratio = torch.empty(b, 10, dtype=torch.float64).uniform_(math.log(0.3), math.log(1 / 0.3),
                                                                  generator=generator)
    heights = (area * log_ratio.exp()).sqrt().round().long()
    widths = (area / log_ratio.exp()).sqrt().round().long()
    fits = (heights < h) & (widths < w)
    first = fits.int().argmax(1, keepdim=True)                             # the first try that fits
    erase &= fits.any(1)
    height = heights.gather(1, first).squeeze(1) * erase
    width = widths.gather(1, first).squeeze(1) * erase
    top = (torch.rand(b, generator=generator, dtype=torch.float64) * (h - height + 1)).long()
    left = (torch.rand(b, generator=generator, dtype=torch.float64) * (w - width + 1)).long()
    return torch.stack([top, left, height, width], dim=1)


def random_erasing(images: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """timm's RandomErasing(probability, mode='pixel', max_count=1) on a batch of standardised images.

    Args:
        images: float (B, C, H, W), already standardised (the noise is N(0, 1), i.e. data-like). Not modified.
        probability: chance that an image gets a box.
        generator: CPU generator for the boxes and the noise.
    Returns:
        (B, C, H, W), same dtype and device: each erased box filled with per-pixel N(0, 1) noise.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4:
        raise TypeError("random_erasing expects standardised float images (B, C, H, W): apply it after "
                        "Preprocessing.")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"random_erasing probability must be in [0, 1], got {probability}.")
    b, c, h, w = images.shape
    boxes = _erasing_boxes(b, h, w, probability, generator)
    noise = torch.randn(c * int((boxes[:, 2] * boxes[:, 3]).sum()), generator=generator)
    top, left, height, width = boxes.to(images.device).unbind(1)
    rows = torch.arange(h, device=images.device) - top[:, None]           # (B, H): row inside the box if in
    cols = torch.arange(w, device=images.device) - left[:, None]          # [0, height), resp. [0, width)
    inside = ((rows >= 0) & (rows < height[:, None]))[:, None, :, None] & \
        ((cols >= 0) & (cols < width[:, None]))[:, None, None, :]
    return images.masked_scatter(inside.expand_as(images), noise.to(images.device, images.dtype))


# ----------------------------------------------------------------------------------------------------------------
# Mixup / CutMix

def _sample_gamma(shape: float, generator: torch.Generator) -> float:
    """One Gamma(shape, 1) draw (Marsaglia & Tsang 2000; shape < 1 via Gamma(shape + 1) * U**(1/shape))."""
    def uniform() -> float:
        return float(torch.rand(1, generator=generator, dtype=torch.float64))
    boost = 1.0
    if shape < 1.0:
        boost, shape = uniform() ** (1.0 / shape), shape + 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        z = float(torch.randn(1, generator=generator, dtype=torch.float64))
        v = (1.0 + c * z) ** 3
        if v > 0 and math.log(max(uniform(), 1e-300)) < 0.5 * z * z + d - d * v + d * math.log(v):
            return d * v * boost


def _sample_beta(alpha: float, generator: torch.Generator) -> float:
    """One Beta(alpha, alpha) draw from the CPU generator (torch's Beta takes no generator)."""
    while True:
        a, b = _sample_gamma(alpha, generator), _sample_gamma(alpha, generator)
        if a + b > 0:   # both can underflow to 0 for tiny alpha
            return a / (a + b)


def _cutmix_box(h: int, w: int, lam: float, generator: torch.Generator) -> tuple[tuple[int, int, int, int], float]:
    """timm's rand_bbox + cutmix_bbox_and_lam: a box of about (1 - lam) of the image, centred uniformly, clipped to
    the image; returns ((top, bottom, left, right), lam corrected to 1 - box area / image area)."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    cy = int(torch.randint(h, (1,), generator=generator))
    cx = int(torch.randint(w, (1,), generator=generator))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    return (top, bottom, left, right), 1.0 - (bottom - top) * (right - left) / float(h * w)


def _mixup_target(labels: torch.Tensor, num_classes: int, lam: float, smoothing: float) -> torch.Tensor:
    """timm's mixup_target: smoothed one-hot float32 (B, num_classes), mixed with the flipped batch's by ``lam``."""
    off = smoothing / num_classes
    one_hot = torch.full((len(labels), num_classes), off, device=labels.device)
    one_hot.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)
    return one_hot * lam + one_hot.flip(0) * (1.0 - lam)


def _check_mix_args(images: torch.Tensor, labels: torch.Tensor, num_classes: int, mixup_alpha: float,
                    cutmix_alpha: float, switch_prob: float, label_smoothing: float) -> None:
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4:
        raise TypeError("mixup_cutmix expects float images (B, C, H, W): apply it after Preprocessing.")
    if labels.ndim != 1 or len(labels) != len(images) or labels.is_floating_point():
        raise ValueError(f"labels must be integer class indices (B,) = ({len(images)},), got {labels.dtype} "
                         f"{tuple(labels.shape)}; pass the loader's labels, not one-hot targets.")
    if mixup_alpha < 0 or cutmix_alpha < 0 or mixup_alpha == cutmix_alpha == 0:
        raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0 and one of them > 0, got {mixup_alpha}, "
                         f"{cutmix_alpha}; to turn both off, do not call mixup_cutmix.")
    if not 0.0 <= switch_prob <= 1.0 or not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"switch_prob must be in [0, 1] and label_smoothing in [0, 1), got {switch_prob}, "
                         f"{label_smoothing}.")
    # The labels' range is checked where they are loaded (ImageSet, fit): no device sync here, once per step.
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a whole number >= 1, got {num_classes!r}: pass the data set's "
                         "number of classes.")


def mixup_cutmix(images: torch.Tensor, labels: torch.Tensor, num_classes: int, mixup_alpha: float,
                 cutmix_alpha: float, switch_prob: float, label_smoothing: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's Mixup(mode='batch', prob=1.0): one lambda per batch, each image mixed with the flipped batch.

    With both alphas > 0, CutMix is chosen with probability ``switch_prob``, else mixup; lambda ~ Beta(alpha, alpha)
    of the one chosen. CutMix pastes a box of the flipped batch and corrects lambda to the pasted area. Unlike timm,
    an odd batch is accepted (its middle image mixes with itself).

    Args:
        images: float (B, C, H, W) (not modified); labels: int64 (B,) in [0, num_classes).
        generator: CPU generator for the choice, lambda and the box.
    Returns:
        mixed images (B, C, H, W) and soft targets float32 (B, num_classes), rows summing to 1, on the images'
        device; train with :func:`soft_target_cross_entropy`.
    """
    _check_mix_args(images, labels, num_classes, mixup_alpha, cutmix_alpha, switch_prob, label_smoothing)
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha == 0 or
                                       float(torch.rand(1, generator=generator, dtype=torch.float64)) < switch_prob)
    lam = _sample_beta(cutmix_alpha if use_cutmix else mixup_alpha, generator)
    flipped = images.flip(0)
    if use_cutmix:
        (top, bottom, left, right), lam = _cutmix_box(images.shape[-2], images.shape[-1], lam, generator)
        mixed = images.clone()
        mixed[..., top:bottom, left:right] = flipped[..., top:bottom, left:right]
    else:
        mixed = images * lam + flipped * (1.0 - lam)
    return mixed, _mixup_target(labels, num_classes, lam, label_smoothing)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """timm's SoftTargetCrossEntropy: mean over the batch of -sum(targets * log_softmax(logits)).

    Args:
        logits: (B, K), any float dtype (computed in float32); targets: (B, K), rows summing to 1.
    Returns:
        scalar float32.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have the same "
                         f"shape (B, num_classes); build targets with mixup_cutmix.")
    return torch.sum(-targets.float() * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
