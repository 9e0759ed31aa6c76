"""The CKA words say how far the matches reach (issue 30): a rising order of best matches that stays within the
ResNet's first layers is not a layer-by-layer correspondence, and no contrast is read from it."""
from __future__ import annotations

import torch

from course_lib import internals

LAYERS = [f"layer{i}" for i in range(17)]
NOTEBOOK_500 = torch.eye(17)[[1, 1, 1, 1, 2, 2, 2, 2, 2]]      # notebook 04's 500-per-class ViT: rho 0.87, p 0.016
NOTEBOOK_100 = torch.eye(17)[[2, 2, 2, 2, 2, 2, 0, 2, 2]]      # its 100-per-class ViT


def test_matches_within_the_first_layers_are_not_a_correspondence():
    words = internals.correspondence_contrast(NOTEBOOK_100, NOTEBOOK_500, LAYERS, "100/class", "500/class")
    assert words.startswith("Neither ViT lines up with the ResNet layer by layer")
    assert "never goes past layer2 (layer 3 of the ResNet's 17)" in words
    assert "Zhu et al.'s account predicts" not in words
    single = internals.layer_correspondence(NOTEBOOK_500)
    assert "only within ResNet layers 1-2 of 0-16: not a layer-by-layer correspondence" in single


def test_a_rising_order_that_reaches_half_way_is_one():
    half = torch.eye(17)[[0, 1, 2, 3, 4, 5, 6, 7, 8]]             # layer8 of 0-16: exactly half-way
    assert "an increasing correspondence" in internals.layer_correspondence(half)
    words = internals.correspondence_contrast(NOTEBOOK_100, half, LAYERS, "100/class", "500/class")
    assert words.startswith("Only the ViT trained on 500/class lines up")
