"""A small hybrid transformer (:class:`HybridViT`, :class:`HybridConfig`) whose final grid is coarser (k < K).

Liu et al. (2021) note that hybrid visual transformers (CvT, Swin, T2T) reshape their tokens into a grid and pool it,
so the last grid has k x k cells with k smaller than the K x K patch grid at the input. This model is the smallest
thing that behaves like that, so the DRLoc chapter can show the task on both kinds of grid:

    images (B, 3, 32, 32)
      -> convolutional stem, two stride-2 3x3 convs       (B, dim, 8, 8)     K = 8, local features from the start
      -> stage 1: ``depth[0]`` transformer blocks on 64 tokens
      -> pooling: depthwise 3x3 stride-2 conv + 1x1 conv (B, 2*dim, 4, 4)    k = 4, like PiT's pooling layer
      -> stage 2: ``depth[1]`` transformer blocks on 16 tokens
      -> mean of the tokens -> linear classifier
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from .common import as_config, check_images, check_rate, check_whole
from .vit import Block

__all__ = ["HybridConfig", "HybridViT", "hybrid_vit"]


@dataclass(frozen=True)
class HybridConfig:
    """Width ``dim`` of stage 1 (stage 2 has ``2 * dim``), blocks and heads per stage, MLP ratio, drop path."""

    img_size: int = 32
    num_classes: int = 10
    dim: int = 128
    depth: tuple[int, int] = (3, 3)
    heads: tuple[int, int] = (4, 8)
    mlp_ratio: float = 2.0
    in_chans: int = 3
    drop_path: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", tuple(self.depth))
        object.__setattr__(self, "heads", tuple(self.heads))
        check_whole("HybridConfig", img_size=self.img_size, num_classes=self.num_classes, dim=self.dim,
                    in_chans=self.in_chans, **{f"depth[{i}]": d for i, d in enumerate(self.depth)},
                    **{f"heads[{i}]": h for i, h in enumerate(self.heads)})
        check_rate("HybridConfig", drop_path=self.drop_path)
        if len(self.depth) != 2 or len(self.heads) != 2:
            raise ValueError(f"HybridConfig: depth and heads need one value per stage (2), got {self.depth}, "
                             f"{self.heads}.")
        if self.img_size % 8:
            raise ValueError(f"HybridViT downsamples by 8, so img_size must be a multiple of 8, not {self.img_size}.")
        if self.dim % self.heads[0] or (2 * self.dim) % self.heads[1]:
            raise ValueError(f"HybridConfig: dim={self.dim} must be divisible by heads[0]={self.heads[0]} and "
                             f"2*dim by heads[1]={self.heads[1]}.")


def _to_grid(tokens: torch.Tensor, side: int) -> torch.Tensor:
    """(B, side*side, D) -> (B, D, side, side)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


class HybridViT(nn.Module):
    """Conv stem + two transformer stages with a pooling step between them. No class token (mean pooling).

    ``forward_blocks(x)`` -> the last stage's tokens (B, k*k, 2*dim), before the final norm;
    ``forward_features(x)`` -> the same after it (as timm's); ``forward_head(features)`` -> logits;
    ``forward_grid(x)`` -> (B, 2*dim, k, k) with k = img_size // 8.
    """

    def __init__(self, config: HybridConfig | None = None, **overrides):
        super().__init__()
        self.config = c = replace(as_config(config, HybridConfig, "HybridViT"), **overrides)
        dim = c.dim
        self.input_grid = c.img_size // 4     # K
        self.grid_size = c.img_size // 8      # k
        self.grid_dim = 2 * dim
        self.stem = nn.Sequential(
            nn.Conv2d(c.in_chans, dim // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(dim // 2), nn.GELU(),
            nn.Conv2d(dim // 2, dim, 3, 2, 1))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.input_grid ** 2, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        rates = torch.linspace(0, c.drop_path, sum(c.depth)).tolist()
        self.stage1 = nn.ModuleList(Block(dim, c.heads[0], c.mlp_ratio, True, 0.0, 0.0, r) for r in rates[:c.depth[0]])
        self.pool = nn.Sequential(nn.Conv2d(dim, dim, 3, 2, 1, groups=dim), nn.Conv2d(dim, 2 * dim, 1))
        self.stage2 = nn.ModuleList(Block(2 * dim, c.heads[1], c.mlp_ratio, True, 0.0, 0.0, r)
                                    for r in rates[c.depth[0]:])
        self.norm = nn.LayerNorm(2 * dim)
        self.head = nn.Linear(2 * dim, c.num_classes)

    num_classes = property(lambda self: self.config.num_classes)
    dim = property(lambda self: self.config.dim)

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the last stage's tokens (B, k*k, 2*dim), before the final norm (as :meth:`ViT.forward_blocks`)."""
        check_images(x, self.config.in_chans, self.config.img_size, type(self).__name__,
                     dtype=self.stem[0].weight.dtype)
        x = self.stem(x).flatten(2).transpose(1, 2) + self.pos_embed       # (B, K*K, D)
        for block in self.stage1:
            x, _ = block(x)
        x = self.pool(_to_grid(x, self.input_grid)).flatten(2).transpose(1, 2)   # (B, k*k, 2D)
        for block in self.stage2:
            x, _ = block(x)
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Final tokens (B, k*k, 2*dim) -> logits: mean of the tokens, linear."""
        return self.head(features.mean(dim=1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the final tokens (B, k*k, 2*dim), after the final norm (as timm's ``forward_features``)."""
        return self.norm(self.forward_blocks(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def feature_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, k*k, 2*dim), before or after the final norm -> (B, 2*dim, k, k)."""
        return _to_grid(tokens, self.grid_size)

    def forward_grid(self, x: torch.Tensor, final_norm: bool = False) -> torch.Tensor:
        return self.feature_grid(self.forward_features(x) if final_norm else self.forward_blocks(x))

    def named_layers(self) -> dict[str, nn.Module]:
        """The transformer blocks in order: "stage1.block1", ... (B, K*K, D), then "stage2.block1", ... (B, k*k, 2D)."""
        return {**{f"stage1.block{i + 1}": b for i, b in enumerate(self.stage1)},
                **{f"stage2.block{i + 1}": b for i, b in enumerate(self.stage2)}}


def hybrid_vit(num_classes: int = 10, **overrides) -> HybridViT:
    return HybridViT(HybridConfig(num_classes=num_classes), **overrides)
