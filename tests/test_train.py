import math

import pytest
import torch
import torch.nn as nn

from course_lib.data import ImageSet, subset
from course_lib.models import ResNetCIFAR, ViT
from course_lib.train import (RECIPES, AuxiliaryLoss, CheckpointMismatchError, TrainConfig, evaluate, fit,
                              load_weights, lr_factor)


def tiny_vit(num_classes=10, seed=0) -> ViT:
    torch.manual_seed(seed)
    return ViT(dim=32, depth=2, heads=2, num_classes=num_classes)


@pytest.fixture
def tiny(cifar10_samples):
    train, test = cifar10_samples
    return subset(train, 4), subset(test, 3)


QUICK = dict(batch_size=16, warmup_epochs=0.5)


def test_fit_records_history(tiny):
    train, test = tiny
    h = fit(tiny_vit(), train, test, epochs=2, progress=False, **QUICK)
    assert h.epoch == [1, 2] and len(h.train_loss) == len(h.test_acc) == len(h.lr) == 2
    assert all(0 <= a <= 100 for a in h.train_acc + h.test_acc)
    assert h.lr[-1] == pytest.approx(RECIPES["course"].min_lr, rel=1e-6)      # cosine ends at min_lr


def test_fit_can_overfit_a_tiny_set():
    """The loop really optimises: a small ViT memorises 20 images (no augmentation)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(20) % 4
    data = ImageSet(images, labels, "cifar10", "train", ["a", "b", "c", "d"], "random")
    model = tiny_vit(num_classes=4)
    h = fit(model, data, data, epochs=30, batch_size=10, lr=3e-3, warmup_epochs=1, augment=False,
            label_smoothing=0.0, progress=False)
    assert h.test_acc[-1] == 100.0 and h.train_loss[-1] < 0.3 * h.train_loss[0]


def test_fit_is_deterministic_on_cpu(tiny):
    train, test = tiny
    a, b = tiny_vit(), tiny_vit()
    ha = fit(a, train, test, epochs=2, progress=False, **QUICK)
    hb = fit(b, train, test, epochs=2, progress=False, **QUICK)
    assert ha.train_loss == hb.train_loss
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_resume_after_interruption_equals_an_uninterrupted_run(tiny, tmp_path):
    train, test = tiny
    straight = tiny_vit()
    h_straight = fit(straight, train, test, epochs=3, progress=False, **QUICK)

    ckpt = tmp_path / "run.pt"
    interrupted = tiny_vit()
    # Simulate a disconnect after epoch 1: train 1 of 3 epochs, then a *fresh* model resumes from the file.
    cfg = TrainConfig(epochs=3, **QUICK)
    _interrupt_after(1, lambda: fit(interrupted, train, test, cfg, checkpoint=ckpt, progress=False))
    assert torch.load(ckpt, weights_only=False)["epoch"] == 0
    resumed = tiny_vit(seed=123)                  # different init: everything must come from the checkpoint
    h_resumed = fit(resumed, train, test, cfg, checkpoint=ckpt, progress=False)
    assert h_resumed.epoch == [1, 2, 3]
    assert h_resumed.train_loss == pytest.approx(h_straight.train_loss, abs=1e-6)
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6), name


def _interrupt_after(epochs_done: int, run) -> None:
    """Run ``run()`` and interrupt it (as a Colab disconnect would) right after ``epochs_done`` checkpoints."""
    import course_lib.train as train_module

    real_save, calls = train_module._save, []

    def save_then_maybe_stop(path, state):
        real_save(path, state)
        calls.append(state["epoch"])
        if len(calls) == epochs_done:
            raise KeyboardInterrupt

    train_module._save = save_then_maybe_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            run()
    finally:
        train_module._save = real_save


def test_finished_checkpoint_returns_without_training(tiny, tmp_path):
    train, test = tiny
    ckpt = tmp_path / "done.pt"
    model = tiny_vit()
    h1 = fit(model, train, test, epochs=1, checkpoint=ckpt, progress=False, **QUICK)
    fresh = tiny_vit(seed=5)
    h2 = fit(fresh, train, test, epochs=1, checkpoint=ckpt, progress=False, **QUICK)
    assert h2.to_dict() == h1.to_dict()
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert torch.equal(load_weights(tiny_vit(seed=9), ckpt).head.weight, model.head.weight)


def test_checkpoint_from_another_model_is_refused(tiny, tmp_path):
    train, test = tiny
    ckpt = tmp_path / "vit.pt"
    fit(tiny_vit(), train, test, epochs=1, checkpoint=ckpt, progress=False, **QUICK)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)saved from ViT\(.*dim=32.*ResNetCIFAR.*delete the file"):
        fit(ResNetCIFAR((1, 1, 1, 1), width=8), train, test, epochs=1, checkpoint=ckpt, progress=False)
    with pytest.raises(CheckpointMismatchError, match="dim=48"):
        load_weights(ViT(dim=48, depth=2, heads=2), ckpt)


class NaNAfter(nn.Module):
    """Wraps a model and poisons its logits from the ``n``-th call on."""

    def __init__(self, model, n):
        super().__init__()
        self.model, self.n, self.calls = model, n, 0

    def forward(self, x):
        self.calls += 1
        out = self.model(x)
        return out * float("nan") if self.calls >= self.n else out


def test_nan_loss_stops_with_the_step(tiny):
    train, test = tiny
    model = NaNAfter(tiny_vit(), n=2)
    with pytest.raises(FloatingPointError, match=r"became nan at epoch 1, step 2 of 2 .*Lower the learning rate"):
        fit(model, train, test, epochs=2, progress=False, **QUICK)


class MeanLogitPenalty(AuxiliaryLoss):
    """A toy auxiliary term with its own parameter: mean of (scale * features)^2, about 1 after LayerNorm."""

    name = "toy"

    def __init__(self, weight):
        super().__init__()
        self.weight = weight
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, model, features, images, labels):
        assert features.shape[1:] == (65, 32) and images.shape[1:] == (3, 32, 32)
        return (self.scale * features).pow(2).mean()


def test_extra_losses_are_weighted_trained_and_logged(tiny):
    train, test = tiny
    base = fit(tiny_vit(), train, test, epochs=1, progress=False, **QUICK, lr=1e-12)
    term = MeanLogitPenalty(weight=2.0)
    h = fit(tiny_vit(), train, test, epochs=1, extra_losses=[term], progress=False, **QUICK, lr=1e-12)
    assert 0.5 < h.extra["toy"][0] < 1.5
    # With a negligible learning rate, the only change in the loss is the weighted term.
    assert h.train_loss[0] == pytest.approx(base.train_loss[0] + 2.0 * h.extra["toy"][0], rel=1e-4)
    h = fit(tiny_vit(), train, test, epochs=1, extra_losses=[term], progress=False, **QUICK)
    assert term.scale.item() != 1.0                                   # the term's parameter was trained
    with pytest.raises(TypeError, match="AuxiliaryLoss"):
        fit(tiny_vit(), train, test, epochs=1, extra_losses=[nn.Linear(2, 2)], progress=False)


class ConstantModel(nn.Module):
    def __init__(self, cls, num_classes=10):
        super().__init__()
        self.cls, self.num_classes = cls, num_classes

    def forward(self, x):
        logits = torch.zeros(len(x), self.num_classes)
        logits[:, self.cls] = 1.0
        return logits


def test_evaluate_against_known_predictions(cifar10_samples):
    _, test = cifar10_samples
    loss, acc = evaluate(ConstantModel(3), test)
    assert acc == pytest.approx(100.0 * float((test.labels == 3).float().mean()))
    p3 = float((test.labels == 3).float().mean())
    expected_loss = p3 * -math.log(math.e / (math.e + 9)) + (1 - p3) * -math.log(1 / (math.e + 9))
    assert loss == pytest.approx(expected_loss, rel=1e-6)


def test_lr_schedule_shape():
    total, warm = 100, 10
    assert lr_factor(0, total, warm, "cosine", 0.01) == pytest.approx(0.1)
    assert lr_factor(9, total, warm, "cosine", 0.01) == pytest.approx(1.0)
    assert lr_factor(10, total, warm, "cosine", 0.01) == pytest.approx(1.0)
    assert lr_factor(55, total, warm, "cosine", 0.01) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(100, total, warm, "cosine", 0.01) == pytest.approx(0.01)
    assert lr_factor(70, total, 0, "constant", 0.01) == 1.0


def test_config_validation():
    with pytest.raises(ValueError, match="optimizer must be"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")
    assert RECIPES["zhu2023"].optimizer == "adam" and RECIPES["zhu2023"].lr == 1e-4 and \
        RECIPES["zhu2023"].batch_size == 100 and not RECIPES["zhu2023"].normalize


def test_channels_last_for_cnns(tiny):
    train, test = tiny
    m = ResNetCIFAR((1, 1, 1, 1), width=8)
    fit(m, train, test, epochs=1, progress=False, **QUICK)
    assert m.stem[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_on_epoch_end_can_stop_training(tiny):
    train, test = tiny
    seen = []
    h = fit(tiny_vit(), train, test, epochs=5, progress=False, on_epoch_end=lambda h: seen.append(len(h)) or
            len(h) == 2, **QUICK)
    assert seen == [1, 2] and h.epoch == [1, 2]
