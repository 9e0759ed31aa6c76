"""Figures for the notebooks and the book: curves, image grids, map overlays, CKA heat maps and explanatory diagrams.

Every function takes plain tensors/arrays (no models) and returns the matplotlib ``Figure`` it drew, so a notebook
can ``fig = plot_...(...)`` and the book shows it. Images are uint8 (B, 3, H, W) or float in [0, 1]. Every figure
is at most ``MAX_WIDTH`` inches wide and writes no text below ``MIN_FONT`` points, so that it stays legible in the
book's text column (see :mod:`.layout`; ``tests/test_plots_widgets.py`` checks this for every function). Maps are
computed by the library (:mod:`course_lib.rollout`, :mod:`course_lib.cka`), never again here.

=================================  =============================  =============================================
curves                             :mod:`.curves`                 :func:`plot_history`,
                                                                  :func:`plot_small_data_curve`,
                                                                  :func:`plot_attention_distance`,
                                                                  :func:`plot_drloc_loss`
images and maps                    :mod:`.maps`                   :func:`show_images`, :func:`overlay_maps`,
                                                                  :func:`plot_map_grid`, :func:`plot_feature_maps`
CKA                                :mod:`.similarity`             :func:`plot_cka`, :func:`plot_cka_grid`,
                                                                  :func:`plot_gram_pair`
diagrams for the background pages  :mod:`.diagrams`               :func:`plot_patch_tokens`,
                                                                  :func:`plot_receptive_fields`,
                                                                  :func:`plot_rollout_product`,
                                                                  :func:`plot_drloc_pairs`
=================================  =============================  =============================================
"""
from .curves import plot_attention_distance, plot_drloc_loss, plot_history, plot_small_data_curve
from .diagrams import plot_drloc_pairs, plot_patch_tokens, plot_receptive_fields, plot_rollout_product
from .layout import MAX_WIDTH, MIN_FONT, short_layer_name
from .maps import overlay_maps, plot_feature_maps, plot_map_grid, show_images
from .similarity import plot_cka, plot_cka_grid, plot_gram_pair

__all__ = ["MAX_WIDTH", "MIN_FONT", "short_layer_name", "plot_history", "show_images", "overlay_maps",
           "plot_map_grid", "plot_feature_maps", "plot_cka", "plot_cka_grid", "plot_small_data_curve",
           "plot_attention_distance", "plot_drloc_loss", "plot_drloc_pairs", "plot_patch_tokens",
           "plot_receptive_fields", "plot_rollout_product", "plot_gram_pair"]
