"""plot_history draws the training cross-entropy alone, so a run with DRLoc is not drawn higher by λ·L_drloc."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from course_lib.plots import plot_history  # noqa: E402


def _history(ce, drloc=None, weight=None):
    h = {"epoch": [1, 2], "train_acc": [50.0, 60.0], "test_loss": [1.0, 0.9], "test_acc": [None, 55.0],
         "lr": [1e-3, 1e-3], "seconds": [1.0, 1.0], "steps": [10, 20], "extra": {}, "extra_weight": {}}
    h["train_loss"] = list(ce)
    if drloc is not None:
        h["train_loss"] = [c + w * d for c, w, d in zip(ce, weight, drloc)]   # what fit records: CE + λ·L
        h["extra"], h["extra_weight"] = {"drloc": list(drloc)}, {"drloc": list(weight)}
    return h


def test_the_drloc_run_is_drawn_as_its_cross_entropy():
    ce = [2.0, 1.5]
    fig = plot_history({"ViT": _history(ce), "ViT+DRLoc": _history(ce, [0.25, 0.19], [0.1, 0.5])},
                       metrics=("train_loss",))
    lines = fig.axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines] == [pytest.approx(ce), pytest.approx(ce)]
    assert "cross-entropy" in fig.axes[0].get_ylabel()
    plt.close(fig)


def test_an_auxiliary_loss_without_its_weight_is_refused():
    h = _history([2.0, 1.5], [0.25, 0.19], [0.5, 0.5])
    h["extra_weight"] = {}
    with pytest.raises(ValueError, match="weight"):
        plot_history({"ViT+DRLoc": h}, metrics=("train_loss",))
    plt.close("all")


def test_the_distance_plot_shows_the_local_threshold_and_keeps_the_legend_off_the_points():
    import torch

    from course_lib.plots import plot_attention_distance

    d = torch.full((9, 12), 16.0)
    d[0, 0] = 14.0
    fig = plot_attention_distance({"trained": d}, uniform=16.5)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert low == 0 and high > 16.5 and low < 0.8 * 16.5           # the threshold (13.2 px) is in view
    levels = sorted(round(float(line.get_ydata()[0]), 6) for line in ax.get_lines() if len(set(line.get_ydata())) == 1
                    and len(line.get_ydata()) == 2)
    assert round(0.8 * 16.5, 6) in levels and 16.5 in levels
    legend = ax.get_legend()
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert box.y1 <= ax.get_window_extent().y0 + 1                  # below the axes, not on the points
    plt.close(fig)
