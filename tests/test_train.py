import math
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from course_lib.data import GPULoader, ImageSet, OverlappingTestSetWarning, load_dataset, subset, take
from course_lib.models import ResNetCIFAR, ViT
from course_lib.recipes import RECIPES, TrainConfig, lr_factor
from course_lib.history import pack_bits, unpack_bits
from conftest import tiny_vit
from course_lib.checkpoints import CheckpointMismatchError, CheckpointSaveError, load_weights
from course_lib.evaluation import evaluate, predict_correct
from course_lib.train import ExtraLoss, fit


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
    with pytest.warns(OverlappingTestSetWarning, match="IS the training set"):      # allowed, but said loudly
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

    real_save, calls = train_module.save_checkpoint, []

    def save_then_maybe_stop(path, state):
        real_save(path, state)
        calls.append(state["epoch"])
        if len(calls) == epochs_done:
            raise KeyboardInterrupt

    train_module.save_checkpoint = save_then_maybe_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            run()
    finally:
        train_module.save_checkpoint = real_save


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
        fit(ResNetCIFAR(blocks=(1, 1, 1, 1), width=8), train, test, epochs=1, checkpoint=ckpt, progress=False)
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


class MeanLogitPenalty(ExtraLoss):
    """A toy auxiliary term with its own parameter: mean of (scale * normed tokens)^2, about 1 after LayerNorm."""

    name = "toy"

    def __init__(self, weight):
        super().__init__()
        self.weight = weight
        self.scale = nn.Parameter(torch.ones(()))

    def weight_at(self, epoch, epochs):
        return self.weight

    def forward(self, model, tokens, images, labels):
        assert tokens.shape[1:] == (65, 32) and images.shape[1:] == (3, 32, 32)
        return (self.scale * model.norm(tokens)).pow(2).mean()     # tokens come before the final norm


def test_extra_losses_are_weighted_trained_and_logged(tiny):
    train, test = tiny
    base = fit(tiny_vit(), train, test, epochs=1, progress=False, **QUICK, lr=1e-12, min_lr=0.0)
    term = MeanLogitPenalty(weight=2.0)
    h = fit(tiny_vit(), train, test, epochs=1, extra_losses=[term], progress=False, **QUICK, lr=1e-12,
            min_lr=0.0)
    assert 0.5 < h.extra["toy"][0] < 1.5
    # With a negligible learning rate, the only change in the loss is the weighted term.
    assert h.train_loss[0] == pytest.approx(base.train_loss[0] + 2.0 * h.extra["toy"][0], rel=1e-4)
    h = fit(tiny_vit(), train, test, epochs=1, extra_losses=[term], progress=False, **QUICK)
    assert term.scale.item() != 1.0                                   # the term's parameter was trained
    with pytest.raises(TypeError, match="ExtraLoss"):
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


@pytest.mark.parametrize("field,value,message", [
    ("grad_clip", -1.0, "grad_clip"), ("grad_clip", 0.0, "grad_clip"), ("min_lr", float("nan"), "min_lr"),
    ("warmup_epochs", -5, "warmup_epochs"), ("epochs", 2.5, "epochs"), ("epochs", True, "epochs"),
    ("lr", 0.0, "lr"), ("lr", -1e-3, "lr"), ("lr", float("inf"), "lr"), ("batch_size", 0, "batch_size"),
    ("label_smoothing", 1.5, "label_smoothing"), ("weight_decay", -0.1, "weight_decay"),
    ("betas", (0.9, 1.5), "betas"), ("eval_every", 0, "eval_every"), ("random_erasing", 2.0, "random_erasing"),
    ("mixup_alpha", -1.0, "mixup_alpha"), ("warmup_epochs", 20.0, "warmup_epochs"), ("seed", -1, "seed"),
    ("schedule_epochs", 5.0, "schedule_epochs"), ("min_lr", 1.0, "min_lr")])
def test_settings_that_would_train_garbage_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        replace(RECIPES["course"], **{field: value})      # course: 10 epochs, lr 1e-3


def test_liu2021_scales_the_learning_rate_and_stretches_the_schedule():
    liu = RECIPES["liu2021"]
    assert liu.peak_lr == pytest.approx(5e-4 * 128 / 512) and liu.final_lr == pytest.approx(5e-6 * 128 / 512)
    assert replace(liu, batch_size=1024).peak_lr == pytest.approx(1e-3)          # the official 8 x 128
    # Training stops at epoch 100 of a 300-epoch cosine with 20 warm-up epochs: the LR is still ~80 % of its peak.
    steps = 10
    at_end = lr_factor(100 * steps, 300 * steps, 20 * steps, "cosine", liu.min_lr / liu.lr)
    assert at_end == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 80 / 280)))
    assert 0.79 < at_end < 0.82
    short = liu.with_epochs(10)                   # a shorter budget keeps the proportions
    assert (short.epochs, short.warmup_epochs, short.schedule_epochs) == (10, 2.0, 30.0)


def test_the_learning_rate_follows_the_scaled_stretched_schedule(tiny):
    train, test = tiny
    cfg = replace(RECIPES["course"], epochs=2, batch_size=16, warmup_epochs=0.0, schedule_epochs=4.0, lr=1e-3,
                  min_lr=0.0, lr_reference_batch=64)
    h = fit(tiny_vit(), train, test, cfg, progress=False)
    steps = len(train) // 16
    expected = [2.5e-4 * lr_factor(e * steps, 4 * steps, 0, "cosine", 0.0) for e in (1, 2)]
    assert h.lr == pytest.approx(expected) and h.steps == [steps, 2 * steps]


def test_a_checkpoint_of_another_run_is_never_resumed(tiny, tmp_path):
    """Other epochs, learning rate or data: fit refuses to continue (or return) the saved run, and says what differs."""
    train, test = tiny
    ckpt = tmp_path / "run.pt"
    fit(tiny_vit(), train, test, epochs=1, checkpoint=ckpt, progress=False, **QUICK)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)config.epochs: 1 -> 2.*resume=False"):
        fit(tiny_vit(), train, test, epochs=2, checkpoint=ckpt, progress=False, **QUICK)
    with pytest.raises(CheckpointMismatchError, match=r"config.lr: 0.001 -> 0.0003"):
        fit(tiny_vit(), train, test, epochs=1, checkpoint=ckpt, progress=False, lr=3e-4, **QUICK)
    other = subset(train, 3)
    with pytest.raises(CheckpointMismatchError, match=r"train_data: '40:"):
        fit(tiny_vit(), other, test, epochs=1, checkpoint=ckpt, progress=False, **QUICK)
    h = fit(tiny_vit(), other, test, epochs=1, checkpoint=ckpt, progress=False, resume=False, **QUICK)
    assert len(h) == 1 and fit(tiny_vit(), other, test, epochs=1, checkpoint=ckpt, progress=False,
                               **QUICK).to_dict() == h.to_dict()            # now the file is this run's


def test_more_classes_than_outputs_is_refused(tiny):
    train, test = tiny
    c100 = subset(load_dataset("cifar100", "train", source="samples"), 1, allow_fewer=True)
    with pytest.raises(ValueError, match="100 classes but the model has 10 outputs.*num_classes=100"):
        fit(tiny_vit(), c100, None, epochs=1, progress=False)


class Explode(ExtraLoss):
    """An extra loss whose value becomes infinite after a few steps, to see the blame land on it."""

    name = "explode"

    def __init__(self, weight=1.0):
        super().__init__()
        self.weight, self.calls = weight, 0

    def weight_at(self, epoch, epochs):
        return self.weight

    def forward(self, model, features, images, labels):
        self.calls += 1
        return features.sum() * 0 + (float("inf") if self.calls >= 3 else 0.0)


class NoWeight(ExtraLoss):
    name = "unweighted"

    def forward(self, model, tokens, images, labels):
        return tokens.sum() * 0


def test_an_extra_loss_must_say_its_weight_before_training(tiny):
    train, test = tiny
    with pytest.raises(NotImplementedError, match="NoWeight must say its weight: define weight_at"):
        fit(tiny_vit(), train, test, epochs=1, extra_losses=[NoWeight()], progress=False)


def test_a_non_finite_extra_loss_is_named(tiny):
    train, test = tiny
    with pytest.raises(FloatingPointError, match="the explode loss became inf at epoch 1, step 3"):
        fit(tiny_vit(), train, test, epochs=1, extra_losses=[Explode()], progress=False, batch_size=8)
    with pytest.raises(ValueError, match="weight of the extra loss 'explode'.*finite"):
        fit(tiny_vit(), train, test, epochs=1, extra_losses=[Explode(weight=float("nan"))], progress=False)


def test_weights_that_become_non_finite_stop_training(tiny):
    train, test = tiny
    model = tiny_vit()
    with torch.no_grad():
        model.head.bias[0] = float("nan")        # a poisoned weight the loss would show only through NaN logits
    model.head.bias.register_hook(lambda g: torch.zeros_like(g))
    with pytest.raises(FloatingPointError, match="became nan|weights became non-finite"):
        fit(model, train, test, epochs=1, progress=False, **QUICK)


def test_the_last_evaluation_is_kept_per_image(tiny):
    train, test = tiny
    model = tiny_vit()
    h = fit(model, train, test, epochs=1, progress=False, **QUICK)
    hits = unpack_bits(h.test_correct, len(test))
    assert 100.0 * hits.float().mean().item() == pytest.approx(h.test_acc[-1])
    assert torch.equal(hits, predict_correct(model, test))
    assert torch.equal(unpack_bits(pack_bits(hits), len(hits)), hits)


def test_channels_last_for_cnns(tiny):
    train, test = tiny
    m = ResNetCIFAR(blocks=(1, 1, 1, 1), width=8)
    fit(m, train, test, epochs=1, progress=False, **QUICK)
    assert m.stem[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_on_epoch_end_can_stop_training(tiny):
    train, test = tiny
    seen = []
    h = fit(tiny_vit(), train, test, epochs=5, progress=False, on_epoch_end=lambda h: seen.append(len(h)) or
            len(h) == 2, **QUICK)
    assert seen == [1, 2] and h.epoch == [1, 2]


def test_a_run_stopped_early_stays_stopped_when_run_again(tiny, tmp_path):
    """Running a finished time-to-accuracy run again returns its history; it must not train one more epoch."""
    train, test = tiny
    stop_at_two = lambda h: len(h) == 2   # noqa: E731
    first = fit(tiny_vit(), train, test, epochs=5, progress=False, on_epoch_end=stop_at_two,
                checkpoint=tmp_path / "run.pt", **QUICK)
    again = fit(tiny_vit(), train, test, epochs=5, progress=False, on_epoch_end=stop_at_two,
                checkpoint=tmp_path / "run.pt", **QUICK)
    assert first.epoch == again.epoch == [1, 2] and again.train_loss == first.train_loss


def test_a_recipe_drop_path_the_model_was_not_built_with_is_refused(tiny):
    """Stochastic depth lives in the model: fit cannot apply liu2021's 0.1 to a model built with 0.0."""
    train, test = tiny
    with pytest.raises(ValueError, match=r"drop_path=0.1 .*built with drop_path=0.0.*create_model"):
        fit(tiny_vit(), train, test, RECIPES["liu2021"], progress=False)


def test_the_liu2021_augmentations_run_in_fit_and_stay_reproducible(tiny):
    """RandAugment, random erasing and mixup/CutMix on the batch: finite losses, same result for the same seed."""
    train, test = tiny
    cfg = replace(RECIPES["liu2021"], epochs=2, batch_size=8, warmup_epochs=0.5, schedule_epochs=6.0)
    runs = [fit(tiny_vit(drop_path=0.1), train, test, cfg, progress=False) for _ in range(2)]
    assert runs[0].train_loss == runs[1].train_loss and all(math.isfinite(v) for v in runs[0].train_loss)
    plain = fit(tiny_vit(drop_path=0.1), train, test,
                replace(cfg, randaugment=None, random_erasing=0.0, mixup_alpha=0.0, cutmix_alpha=0.0), progress=False)
    assert plain.train_loss != runs[0].train_loss


# ----------------------------------------------------------------------------------------------------------------
# Misuse that must not pass silently

def test_a_test_set_of_another_data_set_is_refused(tiny):
    train, _ = tiny
    svhn_test = take(load_dataset("svhn", "test", source="samples"), 10)
    with pytest.raises(ValueError, match="test set is SVHN test but the model trains on CIFAR-10 train.*"
                                         r"load_dataset\('cifar10', 'test'\)"):
        fit(tiny_vit(), train, svhn_test, epochs=1, progress=False)


def test_a_test_set_that_shares_images_with_the_training_set_is_warned_about(tiny):
    train, test = tiny
    with pytest.warns(OverlappingTestSetWarning, match="IS the training set.*memorisation"):
        fit(tiny_vit(), train, train, epochs=1, progress=False, **QUICK)
    part = train.select(torch.arange(10), "ten of them")                 # same official indices, other pixels hash
    with pytest.warns(OverlappingTestSetWarning, match="shares 10 of its 10 images with the training set"):
        fit(tiny_vit(), train, part, epochs=1, progress=False, **QUICK)
    stand_in = load_dataset("svhn", "test", source="samples")          # official *training* images
    full_train = replace(stand_in.select(torch.arange(50)), split="train", source="official SVHN (stand-in)")
    with pytest.warns(OverlappingTestSetWarning, match="shares 50 of its 200 images"):
        fit(tiny_vit(), full_train, stand_in, epochs=1, progress=False, **QUICK)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                     # a proper test split: not a word
        fit(tiny_vit(), train, test, epochs=1, progress=False, **QUICK)


def test_a_full_disk_while_saving_a_checkpoint_names_the_folder_and_free_space(tiny, tmp_path, monkeypatch):
    train, test = tiny

    def disk_full(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointSaveError, match=f"Could not save the checkpoint run.pt in {tmp_path} "
                                                  r"\([\d,.]+ GB free\).*inline_container.*Free some space"):
        fit(tiny_vit(), train, test, epochs=1, checkpoint=tmp_path / "run.pt", progress=False, **QUICK)
    assert list(tmp_path.iterdir()) == []                                  # no temporary file left behind


def test_evaluate_refuses_a_model_with_fewer_outputs_than_classes():
    c100 = take(load_dataset("cifar100", "test", source="samples"), 50)
    with pytest.raises(ValueError, match="CIFAR-100 test has 100 classes but the model.*has 10 outputs"):
        evaluate(tiny_vit(), c100)
    with pytest.raises(ValueError, match="has 100 classes but the model.*has 10 outputs"):
        predict_correct(tiny_vit(), c100)
    foreign = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))    # no num_classes: the logits say it
    with pytest.raises(ValueError, match="The data has 100 classes but the model \\(Sequential\\) has 10 outputs"):
        evaluate(foreign, c100)
    with pytest.raises(ValueError, match="The loader's data has .* classes but the model"):
        evaluate(tiny_vit(), GPULoader(c100, 25))


def test_every_setting_a_recipe_chooses_says_why():
    """The book's recipe table: one row per setting, the recipe's own value, and a reason for every value that is
    not TrainConfig's default."""
    from dataclasses import fields

    from course_lib.recipes import WHY, recipe_rows

    default = TrainConfig()
    for name, recipe in RECIPES.items():
        rows = recipe_rows(name)
        assert [r[0] for r in rows] == [f.name for f in fields(TrainConfig)]
        assert all(value == getattr(recipe, setting) for setting, value, _ in rows)
        chosen = {f.name for f in fields(TrainConfig) if getattr(recipe, f.name) != getattr(default, f.name)}
        assert chosen <= set(WHY[name]), (name, chosen - set(WHY[name]))


def test_train_step_with_a_gradient_scaler_steps_as_without_and_skips_an_overflow():
    """The float16 path of train_step, on the CPU: a power-of-two loss scale is undone exactly before clipping and
    the step (same weights as without a scaler); an infinite gradient skips the step and lowers the scale."""
    from course_lib.train import train_step

    x, y = torch.randn(4, 3, 32, 32), torch.randint(10, (4,))
    models = [tiny_vit(), tiny_vit()]
    scalers = [torch.amp.GradScaler("cpu", enabled=False), torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)]
    for model, scaler in zip(models, scalers):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)     # plain SGD: any mis-scaled gradient shows
        torch.manual_seed(1)
        train_step(model, (x, y, y), optimizer, scaler, grad_clip=0.5)
    for a, b in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(a, b)
    model, scaler = models[1], scalers[1]
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_step(model, (x.clone().fill_(float("inf")), y, y), optimizer, scaler)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())) and scaler.get_scale() < 2.0 ** 10
