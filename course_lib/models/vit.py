"""A Vision Transformer for small images, in one readable file.

Shapes used throughout (for the 32x32 default):
    B  batch size
    K  patches per side (img_size // patch_size = 8), so N = K*K = 64 patch tokens
    T  tokens in the sequence: N + 1 with the class token (65)
    D  embedding width (``dim``), H heads of D/H dims each

The model has two attention paths that compute the same function:
- ``forward`` (training) uses ``F.scaled_dot_product_attention``: fused, memory-efficient, never materialises the
  (T, T) attention matrix;
- ``forward_with_attention`` (visualisation) computes ``softmax(QK^T / sqrt(d))`` explicitly and returns it, one
  (B, H, T, T) tensor per block, for attention rollout.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import check_images

__all__ = ["ViT", "vit_lite", "vit_paper"]


class Attention(nn.Module):
    """Multi-head self-attention: (B, T, D) -> (B, T, D), optionally also the weights (B, H, T, T)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, attn_dropout: float = 0.0,
                 dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_dropout = attn_dropout
        self.proj = nn.Linear(dim, dim)
        self.proj_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        B, T, D = x.shape
        # (B, T, 3D) -> 3 x (B, H, T, D/H)
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        dropout_p = self.attn_dropout if self.training else 0.0
        if return_attention:
            attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)      # (B, H, T, T), rows sum to 1
            out = F.dropout(attn, dropout_p, self.training) @ v
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        out = out.transpose(1, 2).reshape(B, T, D)
        return self.proj_dropout(self.proj(out)), attn


class MLP(nn.Module):
    """Position-wise feed-forward: (B, T, D) -> (B, T, D) through a hidden width of ``mlp_ratio * D``."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample with probability ``p`` while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = torch.empty(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, dropout: float,
                 attn_dropout: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, qkv_bias, attn_dropout, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        y, attn = self.attn(self.norm1(x), return_attention)
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, attn


class ViT(nn.Module):
    """Vision Transformer for small images (pre-norm, learned position embeddings, optional class token).

    Args:
        img_size: side of the square input images; must be divisible by ``patch_size``.
        patch_size: side of the square patches (4 on 32x32 images gives an 8x8 token grid).
        num_classes: number of output logits.
        dim, depth, heads, mlp_ratio: width, number of blocks, attention heads, MLP hidden width / dim.
        pool: ``"cls"`` classifies from the class token, ``"mean"`` from the mean of the patch tokens.
        class_token: keep a class token in the sequence (required for ``pool="cls"``).
        qkv_bias: bias in the query/key/value projection (timm: True; lucidrains/the Zhu et al. ViT: False).
        dropout, attn_dropout, emb_dropout, drop_path: regularisation (all 0 by default).

    Methods (x is (B, in_chans, img_size, img_size)):
        ``forward(x)`` -> logits (B, num_classes)
        ``forward_features(x)`` -> normalised tokens (B, T, dim); ``forward_head(tokens)`` -> logits
        ``forward_grid(x)`` -> the final patch tokens as a grid (B, dim, K, K)
        ``forward_with_attention(x)`` -> (logits, [ (B, heads, T, T) per block ])
    """

    def __init__(self, img_size: int = 32, patch_size: int = 4, num_classes: int = 10, dim: int = 192,
                 depth: int = 9, heads: int = 12, mlp_ratio: float = 2.0, in_chans: int = 3, pool: str = "cls",
                 class_token: bool = True, qkv_bias: bool = True, dropout: float = 0.0,
                 attn_dropout: float = 0.0, emb_dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size={img_size} is not divisible by patch_size={patch_size}: the patches must "
                             f"tile the image. Pick a patch size that divides {img_size} (e.g. 2, 4 or 8 for 32).")
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}; each head gets dim/heads channels.")
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', not {pool!r}.")
        if pool == "cls" and not class_token:
            raise ValueError("pool='cls' needs class_token=True (or use pool='mean').")
        # Keep the constructor arguments as attributes of the same names (timm-style configs, checkpoints).
        self.img_size, self.patch_size, self.num_classes = img_size, patch_size, num_classes
        self.dim, self.depth, self.heads, self.mlp_ratio = dim, depth, heads, mlp_ratio
        self.in_chans, self.pool, self.class_token, self.qkv_bias = in_chans, pool, class_token, qkv_bias
        self.dropout, self.attn_dropout, self.emb_dropout, self.drop_path = dropout, attn_dropout, emb_dropout, drop_path
        self.grid_size = img_size // patch_size                   # K
        self.num_prefix_tokens = 1 if class_token else 0

        # A KxK-stride-K convolution == cutting into patches + one shared linear layer (but faster).
        self.patch_embed = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + self.grid_size ** 2, dim))
        self.emb_drop = nn.Dropout(emb_dropout)
        rates = torch.linspace(0, drop_path, depth).tolist()       # deeper blocks are dropped more often
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio, qkv_bias, dropout, attn_dropout, r) for r in rates)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.apply(self._init_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def config(self) -> dict:
        """The constructor arguments: ``ViT(**model.config)`` rebuilds the architecture."""
        names = ("img_size", "patch_size", "num_classes", "dim", "depth", "heads", "mlp_ratio", "in_chans", "pool",
                 "class_token", "qkv_bias", "dropout", "attn_dropout", "emb_dropout", "drop_path")
        return {n: getattr(self, n) for n in names}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, img_size, img_size) -> token sequence (B, T, dim) with position embeddings."""
        check_images(x, self.in_chans, self.img_size, type(self).__name__)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)        # (B, N, D), row-major over the KxK grid
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.emb_drop(x + self.pos_embed)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> final normalised tokens (B, T, dim)."""
        x = self.embed(x)
        for block in self.blocks:
            x, _ = block(x)
        return self.norm(x)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, dim) -> logits (B, num_classes)."""
        pooled = tokens[:, 0] if self.pool == "cls" else tokens[:, self.num_prefix_tokens:].mean(dim=1)
        return self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def feature_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, dim) -> patch tokens as a spatial grid (B, dim, K, K); the class token is dropped."""
        patches = tokens[:, self.num_prefix_tokens:]
        B, N, D = patches.shape
        return patches.transpose(1, 2).reshape(B, D, self.grid_size, self.grid_size)

    def forward_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the final token grid (B, dim, K, K), as DRLoc reads it."""
        return self.feature_grid(self.forward_features(x))

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Images -> (logits (B, num_classes), [attention (B, heads, T, T) for each block]).

        The explicit (slower) attention path; its logits equal ``forward(x)`` up to float rounding.
        """
        x = self.embed(x)
        attentions = []
        for block in self.blocks:
            x, attn = block(x, return_attention=True)
            attentions.append(attn)
        return self.forward_head(self.norm(x)), attentions


def vit_lite(num_classes: int = 10, **kwargs) -> ViT:
    """The course's default ViT for 32x32 images: patch 4, dim 192, depth 9, heads 12, MLP ratio 2 (~2.7 M params)."""
    return ViT(num_classes=num_classes, **kwargs)


def vit_paper(num_classes: int = 10, **kwargs) -> ViT:
    """The ViT of Zhu et al. (2023): kentaroy47/vision-transformers-cifar10's lucidrains-style ViT.

    Patch 4 on 32x32, dim 512, 6 blocks, 8 heads of 64, MLP hidden 512, dropout 0.1, embedding dropout 0.1,
    no qkv bias, class-token pooling: 9,523,722 parameters for 10 classes, as in that repository.
    """
    config = dict(dim=512, depth=6, heads=8, mlp_ratio=1.0, qkv_bias=False, dropout=0.1, emb_dropout=0.1)
    config.update(kwargs)
    return ViT(num_classes=num_classes, **config)
