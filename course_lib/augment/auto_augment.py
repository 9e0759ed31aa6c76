"""timm's RandAugment on a batch: the ops (PIL's arithmetic, per op), the policy string, ``rand_augment``.

From ``timm/data/auto_augment.py``: ``rand_augment_transform`` (the policy string), ``RandAugment.__call__`` (``n``
ops drawn uniformly with replacement), ``AugmentOp.__call__`` (probability 0.5, magnitude noise, clip to [0, 10]),
``_RAND_TRANSFORMS`` / ``_RAND_INCREASING_TRANSFORMS``, the ``_*_level_to_arg`` mappings and the PIL calls they feed.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["rand_augment", "FILL"]


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
