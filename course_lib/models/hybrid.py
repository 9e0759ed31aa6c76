"""A small hybrid transformer whose final grid is coarser than its input grid (k < K), as in the DRLoc paper.

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

import torch
import torch.nn as nn

from .common import check_images
from .vit import Block

__all__ = ["HybridViT", "hybrid_vit"]


def _to_grid(tokens: torch.Tensor, side: int) -> torch.Tensor:
    """(B, side*side, D) -> (B, D, side, side)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


class HybridViT(nn.Module):
    """Conv stem + two transformer stages with a pooling step between them. No class token (mean pooling).

    ``forward_features(x)`` -> final tokens (B, k*k, 2*dim); ``forward_grid(x)`` -> (B, 2*dim, k, k) with
    k = img_size // 8.
    """

    def __init__(self, img_size: int = 32, num_classes: int = 10, dim: int = 128, depth: tuple[int, int] = (3, 3),
                 heads: tuple[int, int] = (4, 8), mlp_ratio: float = 2.0, in_chans: int = 3, drop_path: float = 0.0):
        super().__init__()
        if img_size % 8:
            raise ValueError(f"HybridViT downsamples by 8, so img_size must be a multiple of 8, not {img_size}.")
        self.img_size, self.num_classes, self.dim, self.depth, self.heads = img_size, num_classes, dim, tuple(depth), tuple(heads)
        self.mlp_ratio, self.in_chans, self.drop_path = mlp_ratio, in_chans, drop_path
        self.input_grid = img_size // 4     # K
        self.grid_size = img_size // 8      # k
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, dim // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(dim // 2), nn.GELU(),
            nn.Conv2d(dim // 2, dim, 3, 2, 1))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.input_grid ** 2, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        rates = torch.linspace(0, drop_path, sum(depth)).tolist()
        self.stage1 = nn.ModuleList(Block(dim, heads[0], mlp_ratio, True, 0.0, 0.0, r) for r in rates[:depth[0]])
        self.pool = nn.Sequential(nn.Conv2d(dim, dim, 3, 2, 1, groups=dim), nn.Conv2d(dim, 2 * dim, 1))
        self.stage2 = nn.ModuleList(Block(2 * dim, heads[1], mlp_ratio, True, 0.0, 0.0, r) for r in rates[depth[0]:])
        self.norm = nn.LayerNorm(2 * dim)
        self.head = nn.Linear(2 * dim, num_classes)

    @property
    def config(self) -> dict:
        names = ("img_size", "num_classes", "dim", "depth", "heads", "mlp_ratio", "in_chans", "drop_path")
        return {n: getattr(self, n) for n in names}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.in_chans, self.img_size, type(self).__name__)
        x = self.stem(x).flatten(2).transpose(1, 2) + self.pos_embed       # (B, K*K, D)
        for block in self.stage1:
            x, _ = block(x)
        x = self.pool(_to_grid(x, self.input_grid)).flatten(2).transpose(1, 2)   # (B, k*k, 2D)
        for block in self.stage2:
            x, _ = block(x)
        return self.norm(x)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(tokens.mean(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def feature_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        return _to_grid(tokens, self.grid_size)

    def forward_grid(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_grid(self.forward_features(x))


def hybrid_vit(num_classes: int = 10, **kwargs) -> HybridViT:
    return HybridViT(num_classes=num_classes, **kwargs)
