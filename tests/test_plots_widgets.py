import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from course_lib import plots  # noqa: E402
from course_lib.data import load_dataset  # noqa: E402
from course_lib.models import ViT  # noqa: E402
from course_lib.train import History  # noqa: E402


def images(n=3):
    return load_dataset("cifar10", "test", source="samples").images[:n]


def test_figures_have_the_panels_asked_for():
    h = History(epoch=[1, 2, 3], train_loss=[2.0, 1.5, 1.2], test_acc=[None, 30.0, 40.0], train_acc=[1, 2, 3],
                test_loss=[None, 1.0, 0.9], lr=[1, 1, 1], seconds=[1, 1, 1])
    fig = plots.plot_history({"a": h, "b": h.to_dict()})
    line = fig.axes[1].lines[0]
    assert list(line.get_xdata()) == [2, 3]                       # the unevaluated epoch is skipped
    assert len(plots.show_images(images(5), ["x"] * 5, n_cols=3).axes) == 6
    assert len(plots.overlay_maps(images(3), torch.rand(3, 8, 8)).axes) == 6
    assert len(plots.plot_map_grid(images(2), torch.rand(2, 4, 8, 8), list("abcd")).axes) == 10
    fig = plots.plot_feature_maps(images(2), {"a": torch.randn(2, 5, 32, 32), "b": torch.randn(2, 7, 4, 4)})
    assert len(fig.axes) == 6 and fig.axes[5].images[0].get_array().shape == (4, 4)
    fig = plots.plot_cka(torch.eye(3), list("abc"), list("abc"), "t")
    assert fig.axes[0].images[0].get_array().shape == (3, 3)
    fig = plots.plot_drloc_pairs(images(1)[0], torch.tensor([[0, 0], [7, 7]]), torch.tensor([[1, 2], [7, 0]]), 8,
                                 torch.tensor([[0.125, 0.25], [0.0, 0.875]]))
    assert len(fig.axes[0].lines) >= 6 and len(fig.axes[0].texts) == 2
    assert len(plots.plot_small_data_curve({"x": [(50, 30.0), (5, 10.0)]}).axes[0].lines) == 1
    plt.close("all")


def test_table_renders_as_html_and_text():
    t = plots.Table(["model", "acc"], [["ViT", 71.234], ["<b>", None]], caption="c")
    html = t._repr_html_()
    assert "<td>71.2</td>" in html and "&lt;b&gt;" in html and "<caption>c</caption>" in html
    text = repr(t).splitlines()
    assert text[0] == "c" and text[1].startswith("model") and "—" in text[-1]


def test_rollout_explorer_builds_and_draws(monkeypatch):
    from course_lib import widgets

    drawn = []
    monkeypatch.setattr(plt, "show", lambda: drawn.append(plt.gcf()))
    torch.manual_seed(0)
    model = ViT(dim=32, depth=2, heads=2)
    box = widgets.rollout_explorer(model, load_dataset("cifar10", "test", source="samples"), n_images=4)
    image_slider, block_slider = box.children[0].children
    assert image_slider.max == 3 and block_slider.max == 2
    image_slider.value = 2                                       # moving a slider redraws
    assert drawn and len(drawn[-1].axes) == 3
    plt.close("all")
