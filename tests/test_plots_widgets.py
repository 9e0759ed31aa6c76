"""The figures of course_lib.plots and the rollout explorer: the panels asked for, legible text, the book's figures."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from course_lib import plots  # noqa: E402
from course_lib.plots import diagrams, layout  # noqa: E402
from course_lib.data import Preprocessing, load_dataset  # noqa: E402
from course_lib.hooks import resnet_layers, vit_layers  # noqa: E402
from course_lib.models import ViT, resnet18_cifar  # noqa: E402
from course_lib.tables import Table  # noqa: E402
from course_lib.history import History  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COLUMN_PX = 700          # the book's text column at a 1280-px window
DPI = 100                # the notebooks' inline backend


def images(n=3):
    return load_dataset("cifar10", "test", source="samples").images[:n]


def history(n=30):
    return History(epoch=list(range(1, n + 1)), train_loss=[2.0 / e for e in range(1, n + 1)],
                   test_acc=[None if e % 5 else 10.0 + e for e in range(1, n + 1)], train_acc=[1.0] * n,
                   test_loss=[None] * n, lr=[1.0] * n, seconds=[1.0] * n)


def small_attentions(T=5, blocks=2, heads=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, heads, T, T, generator=g) * 2).softmax(-1) for _ in range(blocks)]


def _resnet_names():
    return list(resnet_layers(resnet18_cifar(), "convs"))


# Realistic inputs for every public plot function (the sizes the notebooks and the book use).
def _cases():
    torch.manual_seed(0)
    cnn, vit = _resnet_names(), [f"block{i}" for i in range(1, 10)]
    feats = {n: torch.randn(4, 8, s, s) for n, s in zip(cnn, [32] * 5 + [16] * 4 + [8] * 4 + [4] * 4)}
    k = 8
    pos1, pos2 = torch.randint(k, (6, 2)), torch.randint(k, (6, 2))
    return {
        "plot_history": lambda: plots.plot_history({"ViT": history(), "ResNet-18": history()}, title="CIFAR-10"),
        "show_images": lambda: plots.show_images(images(10), ["automobile"] * 10, n_cols=10, size=1.1),
        "overlay_maps": lambda: plots.overlay_maps(images(8), torch.rand(8, 8, 8), ["airplane"] * 8),
        "plot_map_grid": lambda: plots.plot_map_grid(images(4), torch.rand(4, 9, 8, 8) / 64,
                                                     [f"L{i}" for i in range(1, 10)], ["cat", "ship", "frog", "dog"],
                                                     vmin=0, vmax=1 / 32, colorbar_label="share of attention"),
        "plot_feature_maps": lambda: plots.plot_feature_maps(images(4), feats, row_titles=["a", "b", "c", "d"]),
        "plot_cka": lambda: plots.plot_cka(torch.rand(9, 17), vit, cnn, "ViT ↔ ResNet", ylabel="ViT layer",
                                           xlabel="ResNet layer"),
        "plot_cka_grid": lambda: plots.plot_cka_grid({
            "cifar10: ViT ↔ ViT": (torch.rand(9, 9), vit, vit, "ViT layer", "ViT layer"),
            "cifar10: ResNet ↔ ResNet": (torch.rand(17, 17), cnn, cnn, "ResNet layer", "ResNet layer"),
            "cifar10: ViT ↔ ResNet": (torch.rand(9, 17), vit, cnn, "ViT layer", "ResNet layer")}, n_cols=3),
        "plot_small_data_curve": lambda: plots.plot_small_data_curve(
            {"ViT": [(25, 20.0, 18.0, 22.0), (50, 25.0, 23.0, 27.5), (200, 35.0, 33.0, 37.0)],
             "ResNet-18": [(25, 25.0), (50, 30.0), (200, 45.0)]}, title="CIFAR-10, profile 'cpu'"),
        "plot_attention_distance": lambda: plots.plot_attention_distance(
            {"untrained": torch.rand(9, 12) * 5 + 10, "trained": torch.rand(9, 12) * 10 + 5}, uniform=13.3),
        "plot_drloc_loss": lambda: plots.plot_drloc_loss({"cifar10": [0.2, 0.18, 0.15], "svhn": [0.21, 0.2, 0.1]},
                                                         baseline=25 / 128),
        "plot_drloc_pairs": lambda: plots.plot_drloc_pairs(images(1)[0], pos1, pos2, k, (pos1 - pos2).abs() / k),
        "plot_patch_tokens": lambda: plots.plot_patch_tokens(images(1)[0]),
        "plot_receptive_fields": lambda: plots.plot_receptive_fields(images(1)[0]),
        "plot_rollout_product": lambda: plots.plot_rollout_product(small_attentions()),
        "plot_gram_pair": lambda: plots.plot_gram_pair(images(12).float(), images(12).float()[:, :, ::8, ::8],
                                                       ("pixels", "coarse"), ["cat"] * 6 + ["ship"] * 6),
    }


PLOT_FUNCTIONS = [name for name in plots.__all__ if name.startswith(("plot_", "show_", "overlay_"))]


def illegible_texts(fig) -> tuple[float, list[tuple[str, float]]]:
    """(display scale, [(text, size on the page in pt)] below 8 pt) for a figure shown in the book's column.

    The figure is drawn first, so that tick labels exist. Its width is that of its tight bounding box plus the
    padding on both sides, which is what the inline backend saves (``bbox_inches="tight"``): W inches are 100·W px,
    shown at min(1, 700 / (100·W)).
    """
    fig.canvas.draw()
    width_in = fig.get_tightbbox(fig.canvas.get_renderer()).width + 2 * plt.rcParams["savefig.pad_inches"]
    scale = min(1.0, COLUMN_PX / (DPI * width_in))
    small = [(t.get_text(), round(t.get_fontsize() * scale, 2)) for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and t.get_fontsize() * scale < 8]
    return scale, small


def test_every_plot_function_has_a_legibility_case():
    missing = set(PLOT_FUNCTIONS) - set(_cases())
    assert not missing, f"add a realistic case to _cases() for {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(_cases()))
def test_text_is_at_least_8_pt_in_the_book_column(name):
    fig = _cases()[name]()
    scale, small = illegible_texts(fig)
    n_texts = sum(1 for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip())
    plt.close(fig)
    assert n_texts > 0
    assert not small, f"{name}: shown at scale {scale:.2f}, text below 8 pt: {small[:8]}"


def test_legibility_check_catches_a_wide_figure_and_small_text():
    fig, ax = plt.subplots(figsize=(18.7, 2))                  # the old 1,871-px feature-map strip
    ax.set_title("layer1.0.conv1", fontsize=9)
    scale, small = illegible_texts(fig)
    assert scale < 0.5 and ("layer1.0.conv1", round(9 * scale, 2)) in small
    fig2, ax2 = plt.subplots(figsize=(5, 3))
    ax2.set_xticks([0, 1], ["a", "b"], fontsize=6)
    assert [t for t, _ in illegible_texts(fig2)[1]] == ["a", "b"]
    plt.close("all")


def test_figures_have_the_panels_asked_for():
    h = History(epoch=[1, 2, 3], train_loss=[2.0, 1.5, 1.2], test_acc=[None, 30.0, 40.0], train_acc=[1, 2, 3],
                test_loss=[None, 1.0, 0.9], lr=[1, 1, 1], seconds=[1, 1, 1])
    fig = plots.plot_history({"a": h, "b": h.to_dict()})
    assert list(fig.axes[1].lines[0].get_xdata()) == [2, 3]        # the unevaluated epoch is skipped
    assert len(plots.show_images(images(5), ["x"] * 5, n_cols=3).axes) == 6
    assert len(plots.overlay_maps(images(3), torch.rand(3, 8, 8)).axes) == 6
    assert len(plots.plot_map_grid(images(2), torch.rand(2, 4, 8, 8), list("abcd")).axes) == 10
    fig = plots.plot_cka(torch.eye(3), list("abc"), list("abc"), "t")
    assert fig.axes[0].images[0].get_array().shape == (3, 3)
    fig = plots.plot_drloc_pairs(images(1)[0], torch.tensor([[0, 0], [7, 7]]), torch.tensor([[1, 2], [7, 0]]), 8,
                                 torch.tensor([[0.125, 0.25], [0.0, 0.875]]))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(fig.axes[0].lines) >= 6 and legend == ["(0.125, 0.250)", "(0.000, 0.875)"]
    assert len(plots.plot_small_data_curve({"x": [(50, 30.0), (5, 10.0)]}).axes[0].lines) == 1
    plt.close("all")


def test_feature_maps_come_in_rows_of_at_most_six_with_short_names():
    names = _resnet_names()
    feats = {n: torch.randn(2, 4, s, s) for n, s in zip(names, [32] * 5 + [16] * 4 + [8] * 4 + [4] * 4)}
    fig = plots.plot_feature_maps(images(2), feats)
    assert fig.get_figwidth() <= plots.MAX_WIDTH + 1e-6
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 18 and titles[0] == "image" and titles[1] == "stem\n32×32" and "l4.1.c2\n4×4" in titles
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 * 18                                     # every map of both images
    assert shown[-1].images[0].get_array().shape == (4, 4)          # drawn at the layer's own resolution
    columns = {round(ax.get_position().x0, 3) for ax in fig.axes}
    assert len(columns) == 6
    plt.close("all")


def test_short_layer_names_and_cka_labels():
    assert [plots.short_layer_name(n) for n in ["stem.0", "layer1.0.conv1", "layer4.1.conv2", "block3",
                                                "stage2.block1"]] == ["stem", "l1.0.c1", "l4.1.c2", "block3",
                                                                      "s2.block1"]
    fig = plots.plot_cka(torch.rand(9, 17), [f"block{i}" for i in range(1, 10)], _resnet_names())
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()][:3] == ["stem", "l1.0.c1", "l1.0.c2"]
    assert len(ax.get_yticklabels()) == 9
    grid = plots.plot_cka_grid({str(i): (torch.rand(3, 3), list("abc"), list("abc"), "", "") for i in range(3)},
                               n_cols=3)
    assert grid.get_figwidth() <= plots.MAX_WIDTH + 1e-6 and len([a for a in grid.axes if a.images]) == 3
    plt.close("all")


def test_map_grid_shares_a_labelled_colour_scale():
    maps = torch.rand(2, 3, 8, 8) / 64
    fig = plots.plot_map_grid(images(2), maps, ["L1", "L2", "L3"], vmin=0.0, vmax=float(maps.max()),
                              colorbar_label="share of attention")
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "share of attention"]
    assert len(bars) == 1
    overlays = [ax.images[-1] for ax in fig.axes if len(ax.images) == 2]
    assert overlays and all(im.get_clim() == (0.0, float(maps.max())) for im in overlays)
    plt.close("all")


def test_maps_are_upsampled_with_the_rollout_function():
    assert not hasattr(plots, "_upsample")
    m = torch.zeros(1, 8, 8)
    m[0, 2, 3] = 1.0
    fig = plots.overlay_maps(images(1), m)
    shown = fig.axes[1].images[1].get_array()
    from course_lib.rollout import upsample_map

    expected = layout._stretch(upsample_map(m, 32))[0].numpy()
    assert shown.shape == (32, 32) and abs(shown - expected).max() < 1e-6
    plt.close("all")


def test_error_bars_and_new_curves():
    fig = plots.plot_small_data_curve({"ViT": [(25, 20.0, 18.0, 23.0), (50, 25.0, 24.0, 26.0)]})
    assert fig.axes[0].containers                                   # an ErrorbarContainer
    (segments,) = [c for c in fig.axes[0].collections]
    assert sorted(s[:, 1].tolist() for s in segments.get_segments()) == [[18.0, 23.0], [24.0, 26.0]]
    fig = plots.plot_attention_distance({"a": torch.ones(3, 4), "b": 2 * torch.ones(3, 4)}, uniform=5.0)
    ax = fig.axes[0]
    assert len(ax.collections) == 2 and len(ax.lines) == 4 and ax.lines[2].get_linestyle() == "--"
    assert ax.lines[3].get_linestyle() == ":" and ax.lines[3].get_ydata()[0] == 0.8 * 5.0    # the local threshold
    assert ax.lines[0].get_color() != ax.lines[1].get_color()
    fig = plots.plot_drloc_loss({"x": [0.3, 0.2, 0.1]}, baseline=0.195)
    ax = fig.axes[0]
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3] and ax.lines[1].get_ydata()[0] == 0.195
    with pytest.raises(ValueError, match="low, high"):
        plots.plot_small_data_curve({"x": [(1, 2.0, 3.0)]})
    plt.close("all")


def test_receptive_fields_match_the_network():
    from course_lib.exercises import empirical_receptive_fields

    convs = diagrams._resnet18_convs()
    model_convs = resnet_layers(resnet18_cifar(), "convs")
    assert [n for n, _, _ in convs] == list(model_convs)
    assert [(k, s) for _, k, s in convs] == [(m.kernel_size[0], m.stride[0]) for m in model_convs.values()]
    fields = diagrams._receptive_fields(convs)
    measured = empirical_receptive_fields()
    assert [fields[i] for i in (0, 4, 8, 12, 16)] == [measured[n] for n in ["stem", "layer1", "layer2", "layer3",
                                                                           "layer4"]]
    plt.close(plots.plot_receptive_fields(images(1)[0]))


def test_rollout_product_matches_rollout_and_gram_pair_matches_cka():
    from course_lib.cka import linear_cka

    att = small_attentions()
    fig = plots.plot_rollout_product(att)
    R = torch.tensor(fig.axes[2].images[0].get_array())
    m = torch.tensor(fig.axes[3].images[0].get_array())
    assert torch.allclose(R.sum(1), torch.ones(5, dtype=R.dtype), atol=1e-6)
    assert torch.allclose(R[0, 1:].reshape(2, 2), m, atol=1e-6)
    X, Y = torch.randn(10, 30, dtype=torch.float64), torch.randn(10, 5, dtype=torch.float64)
    fig = plots.plot_gram_pair(X, Y)
    assert f"{float(linear_cka(X, Y)):.2f}" in fig.axes[2].get_title()
    K, L = (torch.tensor(ax.images[0].get_array()) for ax in fig.axes[:2])
    cosine = (K * L).sum() / (K.norm() * L.norm())
    assert abs(float(cosine) - float(linear_cka(X, Y))) < 1e-6
    plt.close("all")


def test_table_renders_as_html_and_text():
    t = Table(["model", "acc"], [["ViT", 71.234], ["<b>", None]], caption="c")
    html = t._repr_html_()
    assert "<td>71.2</td>" in html and "&lt;b&gt;" in html and "<caption>c</caption>" in html
    text = repr(t).splitlines()
    assert text[0] == "c" and text[1].startswith("model") and "—" in text[-1]


# --------------------------------------------------------------------------------------------------------------
# The rollout explorer

def _vit():
    torch.manual_seed(0)
    return ViT(dim=32, depth=2, heads=2)


def test_rollout_explorer_builds_and_draws(monkeypatch):
    from course_lib import widgets

    drawn = []
    monkeypatch.setattr(plt, "show", lambda: drawn.append(plt.gcf()))
    model = _vit().train()
    box = widgets.rollout_explorer(model, load_dataset("cifar10", "test", source="samples"), n_images=4)
    assert model.training                                           # eval_mode restored the mode
    image_slider, block_slider = box.children[0].children
    assert image_slider.max == 3 and block_slider.max == 2
    image_slider.value = 2                                          # moving a slider redraws
    fig = drawn[-1]
    assert len([ax for ax in fig.axes if ax.images]) == 3
    assert "fixed for all images and blocks" in fig._suptitle.get_text()
    plt.close("all")


def test_explorer_figure_uses_one_colour_scale_and_the_given_preprocessing():
    from course_lib import widgets

    data = load_dataset("cifar10", "test", source="samples")
    model = _vit()
    figs = [widgets.rollout_explorer_figure(model, data, image=i, block=b, n_images=4) for i in (0, 3) for b in (1, 2)]
    limits = {fig.axes[1].images[0].get_clim() for fig in figs}
    assert len(limits) == 1                                         # one scale for all images and blocks
    maps = [torch.tensor(fig.axes[1].images[0].get_array()) for fig in figs]
    assert all(abs(float(m.sum()) - 1) < 1e-5 for m in maps)        # scale="sum"
    (vmin, vmax), = limits
    assert vmin - 1e-7 <= min(float(m.min()) for m in maps) and max(float(m.max()) for m in maps) <= vmax + 1e-7
    raw = widgets.rollout_explorer_figure(model, data, n_images=4, preprocess=Preprocessing())
    assert not torch.equal(torch.tensor(raw.axes[1].images[0].get_array()), maps[-1])
    with pytest.raises(ValueError, match="block"):
        widgets.rollout_explorer_figure(model, data, block=3, n_images=4)
    plt.close("all")


def test_explorer_figure_is_legible():
    from course_lib import widgets

    fig = widgets.rollout_explorer_figure(_vit(), load_dataset("cifar10", "test", source="samples"), n_images=2)
    scale, small = illegible_texts(fig)
    assert not small, small
    plt.close("all")


def test_explorer_uses_only_keyword_arguments_for_widgets():
    """ipywidgets 7 and 8 differ in the order of positional arguments of some widgets: use keywords only."""
    import ast

    source = (ROOT / "course_lib" / "widgets.py").read_text()
    widget_calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "W" and node.func.attr[0].isupper()]
    assert len(widget_calls) >= 7
    assert all(not call.args for call in widget_calls), [ast.unparse(c)[:60] for c in widget_calls if c.args]
    assert "normalize_pixels" not in source


# --------------------------------------------------------------------------------------------------------------
# The book's figures

@pytest.mark.slow      # every figure of the book, in a subprocess
def test_make_figures_writes_every_figure_the_chapters_use(tmp_path):
    referenced = set()
    import re

    for md in (ROOT / "book").glob("*.md"):
        referenced |= set(re.findall(r"figures/([\w-]+\.png)", md.read_text()))
    assert referenced, "the chapters show no generated figure"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "make_figures.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    written = {p.name for p in tmp_path.glob("*.png")}
    assert referenced <= written, referenced - written
    for name in referenced:
        committed = ROOT / "book" / "figures" / name
        assert committed.exists(), f"book/figures/{name} is not committed"
        fresh, stored = plt.imread(tmp_path / name), plt.imread(committed)
        assert fresh.shape == stored.shape, f"book/figures/{name} is stale: run tools/make_figures.py"
        assert fresh.shape[1] <= COLUMN_PX                          # shown at its natural size in the column
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "tools" / "make_figures.py")
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    assert set(make_figures.FIGURES) >= {Path(n).stem for n in referenced}
