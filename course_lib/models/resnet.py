"""ResNet-18 for 32x32 images (:class:`ResNetCIFAR`, configured by :class:`ResNetConfig`), with the CIFAR stem.

He et al. (2016) with the usual CIFAR stem: one 3x3 conv, no max-pool.

Named stages so feature maps can be hooked by name (see :mod:`course_lib.hooks`):
    stem    (B, 64, 32, 32)   conv3x3 -> BN -> ReLU
    layer1  (B, 64, 32, 32)   2 basic blocks
    layer2  (B, 128, 16, 16)  2 basic blocks, the first with stride 2
    layer3  (B, 256, 8, 8)
    layer4  (B, 512, 4, 4)
    fc      logits after global average pooling
17 convolutions carry weights that see the image (the stem and 2 per block), as in Zhu et al.'s figure; the
1x1 projection shortcuts are not counted among them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import as_config, check_images, check_whole

__all__ = ["ResNetConfig", "BasicBlock", "ResNetCIFAR", "resnet18_cifar"]


@dataclass(frozen=True)
class ResNetConfig:
    """A CIFAR ResNet: ``blocks`` basic blocks per stage ((2, 2, 2, 2) = ResNet-18), the stem's ``width``
    (doubled at every stage), and the ``img_size`` it is meant for (only used to report the final grid size)."""

    blocks: tuple[int, ...] = (2, 2, 2, 2)
    num_classes: int = 10
    in_chans: int = 3
    width: int = 64
    img_size: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        check_whole("ResNetConfig", num_classes=self.num_classes, in_chans=self.in_chans, width=self.width,
                    img_size=self.img_size)
        if len(self.blocks) != 4:
            raise ValueError(f"ResNetConfig: blocks needs one count per stage, 4 stages, got {self.blocks!r}.")
        check_whole("ResNetConfig", **{f"blocks[{i}]": n for i, n in enumerate(self.blocks)})


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual: (B, C_in, H, W) -> (B, C_out, H/stride, W/stride)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:   # project the input when the shape changes
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """ResNet with a CIFAR stem, built from a :class:`ResNetConfig` and/or keyword overrides of its fields.

    Methods (x is (B, in_chans, H, W)): ``forward(x)`` -> logits; ``forward_features(x)`` -> the last stage's map
    (B, 512, H/8, W/8), as timm's; ``forward_blocks(x)`` -> the same map (a ResNet has no final norm: ``norm`` is
    the identity, so that every course model reads ``forward_head(norm(forward_blocks(x)))``);
    ``forward_head(features)`` -> logits (global mean, linear); ``forward_grid(x)`` -> the same last map, which is
    already a spatial grid (DRLoc can use it).
    """

    prefers_channels_last = True    # cuDNN convolutions run faster in NHWC memory layout

    def __init__(self, config: ResNetConfig | None = None, **overrides):
        super().__init__()
        self.config = c = replace(as_config(config, ResNetConfig, "ResNetCIFAR"), **overrides)
        self.stem = nn.Sequential(nn.Conv2d(c.in_chans, c.width, 3, 1, 1, bias=False), nn.BatchNorm2d(c.width),
                                  nn.ReLU(inplace=True))
        channels, stages = c.width, []
        for i, n in enumerate(c.blocks):
            out = c.width * 2 ** i
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[BasicBlock(channels if j == 0 else out, out, stride if j == 0 else 1)
                                          for j in range(n)]))
            channels = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.grid_dim = self.num_features = channels
        self.grid_size = c.img_size // 2 ** (len(c.blocks) - 1)       # 4 for 32x32 images
        self.norm = nn.Identity()      # no final norm (each block ends in its own BatchNorm); no parameters
        self.fc = nn.Linear(channels, c.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    num_classes = property(lambda self: self.config.num_classes)

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the last stage's map (B, 512, H/8, W/8)."""
        check_images(x, self.config.in_chans, None, type(self).__name__, dtype=self.stem[0].weight.dtype)
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the last stage's map (B, 512, H/8, W/8), as timm's (the same as :meth:`forward_blocks`)."""
        return self.norm(self.forward_blocks(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def feature_grid(self, features: torch.Tensor) -> torch.Tensor:
        """The last stage's map is already a grid (B, 512, H/8, W/8)."""
        return features

    def forward_grid(self, x: torch.Tensor, final_norm: bool = False) -> torch.Tensor:
        return self.forward_features(x)      # no final norm: the same either way

    def named_layers(self, granularity: str = "stages") -> dict[str, nn.Module]:
        """The layers the course records, in order: "stages" (stem + 4 stages: 5 layers), "blocks" (stem + every
        basic block: 9 for ResNet-18) or "convs" (stem conv + both convs of every block: 17 for ResNet-18)."""
        stages = {name: getattr(self, name) for name in ("layer1", "layer2", "layer3", "layer4")}
        if granularity == "stages":
            return {"stem": self.stem, **stages}
        if granularity == "blocks":
            return {"stem": self.stem, **{f"{name}.{j}": block for name, stage in stages.items()
                                          for j, block in enumerate(stage)}}
        if granularity == "convs":
            return {"stem.0": self.stem[0], **{f"{name}.{j}.{conv}": getattr(block, conv)
                                               for name, stage in stages.items() for j, block in enumerate(stage)
                                               for conv in ("conv1", "conv2")}}
        raise ValueError(f"granularity must be 'stages', 'blocks' or 'convs', not {granularity!r}.")


def resnet18_cifar(num_classes: int = 10, **overrides) -> ResNetCIFAR:
    """ResNet-18 for 32x32 images: 11,173,962 parameters for 10 classes."""
    return ResNetCIFAR(ResNetConfig((2, 2, 2, 2), num_classes=num_classes), **overrides)
