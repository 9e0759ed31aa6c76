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


def test_the_contrast_over_seeds_counts_the_seeds_and_never_calls_three_significant():
    rising = torch.eye(17)[[0, 2, 4, 6, 8, 10, 12, 14, 16]]                 # rho 1, reaches the last layer
    pairs = {seed: (NOTEBOOK_100, rising) for seed in (0, 1, 2)}
    table, words = internals.correspondence_over_seeds(pairs, LAYERS, "100/class", "500/class")
    assert [row[0] for row in table.rows] == [0, 1, 2] and table.rows[0][5] == 1.0 and table.rows[0][7] == "layer16"
    assert "in 0 of 3 seed(s) with 100/class and 3 of 3 with 500/class" in words
    assert "no interval: every seed gives the same difference" in words       # no spread: no zero-width interval
    assert "not a difference 3 seeds can show (the smallest p their sign-flip test can give is 0.25)" in words
    assert "significant" not in words
    one_table, one = internals.correspondence_over_seeds({0: pairs[0]}, LAYERS)
    assert one.endswith("One seed: no seed-level verdict.") and len(one_table.rows) == 1


def test_the_contrast_over_six_seeds_can_show_a_difference_and_a_mixed_one_cannot():
    rising = torch.eye(17)[[0, 2, 4, 6, 8, 10, 12, 14, 16]]
    slightly = torch.eye(17)[[0, 2, 4, 6, 8, 10, 12, 16, 14]]              # rho < 1
    pairs = {s: (NOTEBOOK_100, rising if s % 2 else slightly) for s in range(6)}
    _, words = internals.correspondence_over_seeds(pairs, LAYERS)
    assert "exact sign-flip test p = 0.031): a difference these seeds show" in words
    mixed = {s: ((NOTEBOOK_100, rising) if s % 2 else (rising, NOTEBOOK_100)) for s in range(6)}
    _, words = internals.correspondence_over_seeds(mixed, LAYERS)
    assert words.endswith("no difference these seeds can show.")
