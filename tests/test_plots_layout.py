"""The figures' layout, measured on the drawn figure: no text covers other text or a panel, no empty panel slot.

Each test draws the figure with the Agg renderer and compares the window extents (pixels) of what it checks."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib.plots import plot_cka_grid, plot_drloc_pairs, plot_feature_maps, plot_map_grid  # noqa: E402

NAMES = ["airplane", "automobile", "bird", "cat"]   # "automobile" is longer than a panel is tall


def _extent(artist, renderer):
    return artist.get_window_extent(renderer)


def _disjoint(boxes) -> bool:
    return not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def _images(n=4):
    return (torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)


@pytest.mark.parametrize("kind", ["map_grid", "feature_maps"])
def test_row_titles_stay_beside_their_own_row(kind):
    images = _images()
    if kind == "map_grid":    # as notebook 02: the image and the rollout after each of 7 blocks, one scale
        fig = plot_map_grid(images, torch.rand(4, 7, 8, 8), [f"after block {i + 1}" for i in range(7)],
                            row_titles=NAMES, vmin=0.0, vmax=1.0)
    else:
        fig = plot_feature_maps(images, {f"layer{i}": torch.rand(4, 8, 16, 16) for i in range(5)}, row_titles=NAMES)
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.images]
    labelled = [ax for ax in panels if ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in labelled] == NAMES
    labels = [_extent(ax.yaxis.label, renderer) for ax in labelled]
    assert _disjoint(labels), "two row titles overlap"
    for label, ax in zip(labels, labelled):
        row = _extent(ax, renderer)
        assert row.y0 - 1 <= label.y0 and label.y1 <= row.y1 + 1, "a row title reaches into another row"
        assert not any(label.overlaps(_extent(p, renderer)) for p in panels), "a row title covers a panel"
        assert label.x0 >= 0, "a row title is cut off at the figure's left edge"
    plt.close(fig)


def _cka_panels(n):
    m = torch.rand(7, 22, generator=torch.Generator().manual_seed(1))
    vit, cnn = [f"block{i}" for i in range(7)], [f"layer{i // 4 + 1}.{i % 2}.conv{i % 2 + 1}" for i in range(22)]
    return {f"panel {i}": (m, vit, cnn, "ViT layer", "ResNet layer") for i in range(n)}


@pytest.mark.parametrize("n", [1, 2, 3])
def test_cka_grid_leaves_no_empty_slot_and_its_colour_bar_spans_the_panels(n):
    fig = plot_cka_grid(_cka_panels(n))
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.images]
    others = [ax for ax in fig.axes if not ax.images]
    assert len(panels) == n and all(ax.get_visible() and ax.axison for ax in panels)
    bars = [ax for ax in others if ax.get_ylabel() == "CKA"]
    assert len(bars) == 1 and len(others) == 1, "an empty panel slot (or a second colour bar) is left"
    boxes = [ax.get_position() for ax in panels]
    top, bottom = max(b.y1 for b in boxes), min(b.y0 for b in boxes)
    bar = bars[0].get_position()
    assert bar.y1 >= top - 0.05 and bar.y0 <= bottom + 0.05, "the colour bar floats beside part of the panels"
    if n == 3:    # the lone panel of the last row sits in the middle under the two above
        centre = lambda b: (b.x0 + b.x1) / 2   # noqa: E731
        above = (centre(boxes[0]) + centre(boxes[1])) / 2
        assert abs(centre(boxes[2]) - above) < 0.03
    assert _disjoint([_extent(ax, renderer) for ax in panels])
    plt.close(fig)


def test_drloc_pair_targets_never_cover_each_other():
    # Two pairs whose segments cross at the same midpoint: labels at the midpoints fell on top of each other.
    pos1 = torch.tensor([[0, 0], [0, 2], [1, 0]])
    pos2 = torch.tensor([[2, 2], [2, 0], [1, 2]])
    targets = (pos1 - pos2).abs().float() / 4
    fig = plot_drloc_pairs(_images(1)[0], pos1, pos2, 4, targets)
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    wanted = ["({:.3f}, {:.3f})".format(*t) for t in targets.tolist()]
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text() in wanted and t.get_visible()]
    assert sorted(t.get_text() for t in texts) == sorted(wanted), "each pair's target is written once"
    assert _disjoint([_extent(t, renderer) for t in texts]), "two targets' labels overlap"
    image_ax = next(ax for ax in fig.axes if ax.images)
    assert not any(_extent(t, renderer).overlaps(_extent(image_ax, renderer)) for t in texts), \
        "a label covers the image"
    assert fig.get_size_inches()[0] <= 6.8
    plt.close(fig)
