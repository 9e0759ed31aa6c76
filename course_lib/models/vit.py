"""A Vision Transformer for small images (:class:`ViT`, configured by :class:`ViTConfig`), in one readable file.

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

As in timm: ``forward_features`` returns the tokens after the final LayerNorm and ``forward_head`` pools and
classifies them. ``forward_blocks`` stops one step earlier, at the last block's tokens before that norm, which is
where DRLoc's official code reads them (``DRLocLoss(tokens="pre_norm")``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import as_config, check_images, check_rate, check_whole

__all__ = ["ViTConfig", "ViT", "vit_lite", "vit_paper"]


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


@dataclass(frozen=True)
class ViTConfig:
    """Everything that defines a :class:`ViT`'s architecture (and its initialisation).

    img_size: side of the square input images; must be divisible by ``patch_size``.
    patch_size: side of the square patches (4 on 32x32 images gives an 8x8 token grid).
    dim, depth, heads, mlp_ratio: width, number of blocks, attention heads, MLP hidden width / dim.
    pool: ``"cls"`` classifies from the class token, ``"mean"`` from the mean of the patch tokens.
    class_token: keep a class token in the sequence (required for ``pool="cls"``).
    qkv_bias: bias in the query/key/value projection (timm: True; lucidrains/the Zhu et al. ViT: False).
    dropout, attn_dropout, emb_dropout, drop_path: regularisation rates in [0, 1).
    init: ``"trunc_normal"`` (timm: weights N(0, 0.02) truncated, position embedding and class token too) or
        ``"torch_default"`` (lucidrains/kentaroy47, the ViT of Zhu et al.: PyTorch's default layer init, position
        embedding and class token from a standard normal).
    """

    img_size: int = 32
    patch_size: int = 4
    num_classes: int = 10
    dim: int = 192
    depth: int = 9
    heads: int = 12
    mlp_ratio: float = 2.0
    in_chans: int = 3
    pool: str = "cls"
    class_token: bool = True
    qkv_bias: bool = True
    dropout: float = 0.0
    attn_dropout: float = 0.0
    emb_dropout: float = 0.0
    drop_path: float = 0.0
    init: str = "trunc_normal"

    def __post_init__(self) -> None:
        check_whole("ViTConfig", img_size=self.img_size, patch_size=self.patch_size, num_classes=self.num_classes,
                    dim=self.dim, depth=self.depth, heads=self.heads, in_chans=self.in_chans)
        check_rate("ViTConfig", dropout=self.dropout, attn_dropout=self.attn_dropout, emb_dropout=self.emb_dropout,
                   drop_path=self.drop_path)
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size={self.img_size} is not divisible by patch_size={self.patch_size}: the "
                             f"patches must tile the image. Pick a patch size that divides {self.img_size} "
                             "(e.g. 2, 4 or 8 for 32).")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} is not divisible by heads={self.heads}; each head gets dim/heads "
                             "channels.")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio!r}.")
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', not {self.pool!r}.")
        if self.pool == "cls" and not self.class_token:
            raise ValueError("pool='cls' needs class_token=True (or use pool='mean').")
        if self.init not in ("trunc_normal", "torch_default"):
            raise ValueError(f"init must be 'trunc_normal' or 'torch_default', not {self.init!r}.")


class ViT(nn.Module):
    """Vision Transformer for small images (pre-norm, learned position embeddings, optional class token).

    Build with a :class:`ViTConfig`, keyword overrides of its fields, or both: ``ViT(dim=256, depth=6)``.

    Methods (x is (B, in_chans, img_size, img_size)):
        ``forward(x)`` -> logits (B, num_classes)
        ``forward_blocks(x)`` -> the last block's tokens (B, T, dim), before the final norm ``norm``
        ``forward_features(x)`` -> the tokens after the final norm (B, T, dim), as timm's
        ``forward_head(features)`` -> logits (pooling, linear), as timm's
        ``forward_grid(x, final_norm=False)`` -> the last block's patch tokens as a grid (B, dim, K, K)
        ``forward_with_attention(x)`` -> (logits, [ (B, heads, T, T) per block ])
    """

    def __init__(self, config: ViTConfig | None = None, **overrides):
        super().__init__()
        self.config = c = replace(as_config(config, ViTConfig, "ViT"), **overrides)
        self.grid_size = c.img_size // c.patch_size              # K
        self.grid_dim = c.dim                                    # channels of the token grid (DRLoc's D)
        self.num_prefix_tokens = 1 if c.class_token else 0
        # A KxK-stride-K convolution == cutting into patches + one shared linear layer (but faster).
        self.patch_embed = nn.Conv2d(c.in_chans, c.dim, kernel_size=c.patch_size, stride=c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim)) if c.class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + self.grid_size ** 2, c.dim))
        self.emb_drop = nn.Dropout(c.emb_dropout)
        rates = torch.linspace(0, c.drop_path, c.depth).tolist()    # deeper blocks are dropped more often
        self.blocks = nn.ModuleList(
            Block(c.dim, c.heads, c.mlp_ratio, c.qkv_bias, c.dropout, c.attn_dropout, r) for r in rates)
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        prefix = [self.pos_embed] + ([self.cls_token] if self.cls_token is not None else [])
        if self.config.init == "torch_default":      # as the reference ViT of Zhu et al.: randn, layers untouched
            for p in prefix:
                nn.init.normal_(p, std=1.0)
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for p in prefix:
            nn.init.trunc_normal_(p, std=0.02)

    # Short names for the config fields the course reads most.
    num_classes = property(lambda self: self.config.num_classes)
    dim = property(lambda self: self.config.dim)
    patch_size = property(lambda self: self.config.patch_size)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, img_size, img_size) -> token sequence (B, T, dim) with position embeddings."""
        check_images(x, self.config.in_chans, self.config.img_size, type(self).__name__,
                     dtype=self.patch_embed.weight.dtype)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)        # (B, N, D), row-major over the KxK grid
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.emb_drop(x + self.pos_embed)

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the last block's tokens (B, T, dim), *before* the final norm: where DRLoc's official code reads
        them. ``norm`` of them is :meth:`forward_features`."""
        x = self.embed(x)
        for block in self.blocks:
            x, _ = block(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the final tokens (B, T, dim), after the final norm (as timm's ``forward_features``)."""
        return self.norm(self.forward_blocks(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Final tokens (B, T, dim) -> logits (B, num_classes): class token or mean of the patches, then linear."""
        pooled = features[:, 0] if self.config.pool == "cls" else features[:, self.num_prefix_tokens:].mean(dim=1)
        return self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def feature_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, dim), of :meth:`forward_blocks` or :meth:`forward_features` -> the patch tokens as a
        spatial grid (B, dim, K, K); the class token is dropped."""
        patches = tokens[:, self.num_prefix_tokens:]
        B, N, D = patches.shape
        return patches.transpose(1, 2).reshape(B, D, self.grid_size, self.grid_size)

    def forward_grid(self, x: torch.Tensor, final_norm: bool = False) -> torch.Tensor:
        """Images -> the last block's patch tokens as a grid (B, dim, K, K), as DRLoc reads them; ``final_norm``:
        after the final norm instead (the tokens the classifier pools)."""
        return self.feature_grid(self.forward_features(x) if final_norm else self.forward_blocks(x))

    def named_layers(self) -> dict[str, nn.Module]:
        """The layers the course records, in order: {"block1": blocks[0], ...}, each outputting (B, T, dim)."""
        return {f"block{i + 1}": block for i, block in enumerate(self.blocks)}

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


def vit_lite(num_classes: int = 10, **overrides) -> ViT:
    """The course's default ViT for 32x32 images: patch 4, dim 192, depth 9, heads 12, MLP ratio 2 (~2.7 M params)."""
    return ViT(ViTConfig(num_classes=num_classes), **overrides)


PAPER_VIT = ViTConfig(dim=512, depth=6, heads=8, mlp_ratio=1.0, qkv_bias=False, dropout=0.1, emb_dropout=0.1,
                      init="torch_default")


def vit_paper(num_classes: int = 10, **overrides) -> ViT:
    """The ViT of Zhu et al. (2023): kentaroy47/vision-transformers-cifar10's lucidrains-style ViT.

    Patch 4 on 32x32, dim 512, 6 blocks, 8 heads of 64, MLP hidden 512, dropout 0.1 (after the attention
    projection and in the MLP, as there), embedding dropout 0.1, no qkv bias, class-token pooling, PyTorch's default
    layer initialisation with the position embedding and class token from a standard normal:
    9,523,722 parameters for 10 classes, as in that repository. (Its patch embedding is a Linear on flattened
    patches; ours is the equivalent stride-4 convolution, whose default init has the same fan-in.)
    """
    return ViT(replace(PAPER_VIT, num_classes=num_classes), **overrides)
