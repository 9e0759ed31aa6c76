"""check_unpatchify (notebook 01's exercise): a right answer passes, the usual wrong ones fail with a reason."""
from __future__ import annotations

import torch

from course_lib import exercises as ex
from course_lib.models import ViT


def unpatchify(patches, p, H, W):
    B, _, D = patches.shape
    C = D // (p * p)
    return patches.reshape(B, H // p, W // p, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, C, H, W)


def test_the_inverse_of_the_models_own_patch_cut_passes():
    # independent of the checker's own cut: the patch embedding's convolution, inverted through its weights
    model = ViT(img_size=16, patch_size=4, dim=48, depth=1, heads=2)
    images = torch.randn(2, 3, 16, 16)
    w = model.patch_embed.weight.detach().flatten(1)                          # (D, C*p*p), invertible here
    tokens = model.patch_embed(images).detach().flatten(2).transpose(1, 2) - model.patch_embed.bias.detach()
    patches = torch.linalg.solve(w, tokens.transpose(1, 2)).transpose(1, 2)    # (B, N, C*p*p)
    torch.testing.assert_close(unpatchify(patches, 4, 16, 16), images, atol=1e-4, rtol=1e-4)
    assert ex.check_unpatchify(unpatchify)


def test_wrong_answers_fail(capsys):
    def swapped(patches, p, H, W):           # H and W exchanged: only a non-square image shows it
        return unpatchify(patches, p, W, H).transpose(2, 3)

    def channels_last(patches, p, H, W):     # each patch read as (row, column, channel)
        B, _, D = patches.shape
        C = D // (p * p)
        return patches.reshape(B, H // p, W // p, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, H, W)

    assert not ex.check_unpatchify(swapped)
    assert not ex.check_unpatchify(channels_last)
    assert "wrong places" in capsys.readouterr().out
    assert not ex.check_unpatchify(lambda patches, p, H, W: patches)
    assert "shape" in capsys.readouterr().out
    assert not ex.check_unpatchify(lambda patches, p, H, W: None)
    assert not ex.check_unpatchify(lambda patches, p, H, W: 1 / 0)
