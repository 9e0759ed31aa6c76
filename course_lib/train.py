"""One training loop for every notebook, :func:`fit` (the recipes it follows are in :mod:`course_lib.recipes`).

What it does, and why:
- AdamW (or Adam/SGD) with a linear warm-up and a cosine decay, stepped every batch: transformers trained from
  scratch diverge without warm-up. The cosine may be laid out over more epochs than are trained
  (``schedule_epochs``), as the official DRLoc runs do.
- Label smoothing, gradient clipping, weight decay only on weight matrices (not on norms, biases, embeddings);
  optionally RandAugment, random erasing and mixup/CutMix on the GPU batch (:mod:`course_lib.augment`).
- Mixed precision on CUDA (:func:`course_lib.runtime.precision`): bfloat16 on GPUs that compute it natively,
  float16 with a gradient scaler on older ones (a Colab T4). CPU runs stay in float32.
- ``channels_last`` memory layout for convolutional models (they say so with ``prefers_channels_last = True``).
- Extra losses (:class:`ExtraLoss`, e.g. DRLoc) are added to the cross-entropy with their weight in each epoch
  (``weight_at``: DRLoc's λ, ``drloc_weight``, may follow a schedule over the epochs); their parameters are
  trained with the model, checkpointed with it, and never used at evaluation.
- A checkpoint after every epoch and an exact **resume** after an interruption: each epoch's randomness is seeded
  from ``(seed, epoch)``, so a resumed run gives the same weights as an uninterrupted one on the CPU. What a
  checkpoint must match to be resumed, and how it is written, is :mod:`course_lib.checkpoints`.
- A non-finite loss or weight stops training, naming the term, the epoch and the step.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm as text_tqdm
from tqdm.auto import tqdm as auto_tqdm

from . import augment as aug
from .checkpoints import fit_identity, load_resumable, save_checkpoint, settings_text
from .data import GPULoader, Preprocessing, check_test_set
from .evaluation import evaluate_loader
from .history import History, pack_bits
from .recipes import RECIPES, TrainConfig, drops_ragged_batch, lr_factor
from .runtime import get_device, precision, train_mode
from .settings import plain_progress

if TYPE_CHECKING:     # names used only in annotations
    from .data import ImageSet
    from .runtime import Precision

__all__ = ["train_step", "fit", "ExtraLoss"]


# --------------------------------------------------------------------------------------------------------------
# One training step: the only place in course_lib where the forward pass, the loss, backward and the optimiser
# step happen (fit calls it once per batch; notebook 05 redoes it by hand in plain torch).

def train_step(model: nn.Module, batch: tuple, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               extra_losses: Sequence[tuple[float, ExtraLoss]] = (), *, label_smoothing: float = 0.0,
               grad_clip: float | None = None, autocast=nullcontext()) -> tuple[torch.Tensor, ...]:
    """One optimiser step on ``batch = (images, labels, targets)``; ``targets`` is ``labels``, or the soft targets
    (B, classes) of mixup/CutMix. ``extra_losses``: (weight, loss) pairs added to the cross-entropy. ``scaler``:
    ``GradScaler(enabled=...)``, a no-op unless float16 needs it. Returns (total loss, each term unweighted
    (1 + extras,), logits), all detached."""
    images, labels, targets = batch
    with autocast:                           # float32 on the CPU; bfloat16/float16 on a GPU
        tokens = model.forward_blocks(images) if extra_losses else None     # before the final norm
        logits = model(images) if tokens is None else model.forward_head(model.norm(tokens))
        if targets.dim() == 1:
            ce = F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)
        else:                                # mixup's targets already hold the label smoothing
            ce = aug.soft_target_cross_entropy(logits.float(), targets)
        terms = [ce] + [term(model, tokens, images, labels).float() for _, term in extra_losses]
    loss = terms[0] + sum(w * t for (w, _), t in zip(extra_losses, terms[1:]))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)               # clip the true gradients, not the scaled ones
    if grad_clip:
        nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    scaler.step(optimizer)                   # skipped when a float16 gradient overflowed
    scaler.update()
    return loss.detach(), torch.stack([t.detach() for t in terms]), logits.detach()


# --------------------------------------------------------------------------------------------------------------
# What fit adds to the cross-entropy

class ExtraLoss(nn.Module):
    """A loss that :func:`fit` adds to the cross-entropy: ``total = cross_entropy + weight_at(epoch) * loss``
    (the papers' "auxiliary loss"; in the code it is always an *extra loss*, logged in ``History.extra[name]``).

    Subclasses set ``name``, implement ``forward(model, tokens, images, labels)`` returning a scalar and
    :meth:`weight_at`, and return every setting that changes the result from :meth:`settings` (it enters the run's
    identity). ``tokens`` is ``model.forward_blocks(images)`` (the last stage before the final norm; the logits are
    ``model.forward_head(model.norm(tokens))``) from the same forward pass as the logits, so the loss costs no
    second pass through the backbone. Any parameters it has are trained with the model.
    """

    name: str = "extra"

    def weight_at(self, epoch: int, epochs: int) -> float:
        """This loss's weight in (0-based) ``epoch`` of ``epochs`` (DRLoc: its ``drloc_weight``, after its
        schedule); ``History.extra_weight[name]`` keeps it per epoch."""
        raise NotImplementedError(f"{type(self).__name__} must say its weight: define weight_at(epoch, epochs).")

    def settings(self) -> dict:
        """The settings that change this loss's result, as plain values (none for a loss without settings)."""
        return {}

    def identity(self) -> dict:
        """What changes the result of this loss (kept with checkpoints and records): its class and settings."""
        return {"class": type(self).__name__, "settings": self.settings()}

    def extra_repr(self) -> str:
        return settings_text(self.settings())

    def forward(self, model: nn.Module, tokens: torch.Tensor, images: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------------------------------------------
# The loop, in named steps

@dataclass
class _Run:
    """Everything one training run needs, built once by :func:`_prepare`."""

    model: nn.Module
    extra_losses: nn.ModuleList     # trained with the model, never used at evaluation
    cfg: TrainConfig
    device: torch.device
    train_loader: GPULoader
    test_loader: GPULoader | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    prec: Precision
    scaler: torch.amp.GradScaler      # GradScaler(enabled=...): a no-op unless float16 needs it
    autocast: object                  # one autocast context (disabled in float32)
    num_classes: int
    val_loader: GPULoader | None = None       # the validation split
    clean_loader: GPULoader | None = None     # the training images in order, without augmentation

    @property
    def params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]


def _check_inputs(model: nn.Module, train_data: ImageSet, test_data: ImageSet | None,
                  extra_losses: Sequence[ExtraLoss], cfg: TrainConfig, val_data: ImageSet | None = None) -> None:
    if any(not isinstance(t, ExtraLoss) for t in extra_losses):
        raise TypeError("extra_losses must be ExtraLoss instances (e.g. course_lib.drloc.DRLocLoss).")
    if extra_losses and not all(hasattr(model, name) for name in ("forward_blocks", "norm", "forward_head")):
        raise TypeError(f"{type(model).__name__} lacks forward_blocks(), norm or forward_head(), so extra losses "
                        "cannot read its tokens. Use a course_lib model or add them to yours (forward(x) must be "
                        "forward_head(norm(forward_blocks(x)))).")
    for t, epoch in ((t, epoch) for t in extra_losses for epoch in range(cfg.epochs)):
        weight = t.weight_at(epoch, cfg.epochs)
        if isinstance(weight, bool) or not (isinstance(weight, (int, float)) and math.isfinite(weight)
                                            and weight >= 0):
            raise ValueError(f"The weight of the extra loss {t.name!r} in epoch {epoch + 1} (its weight_at) must "
                             f"be a finite number >= 0, got {weight!r}.")
    # drop-path is built into the model, so a recipe's value must already be there (the record says it was used).
    built = getattr(getattr(model, "config", None), "drop_path", None)
    if cfg.drop_path is not None and built is not None and built != cfg.drop_path:
        raise ValueError(f"The recipe asks for drop_path={cfg.drop_path} but the model was built with "
                         f"drop_path={built}. Build it with create_model(name, drop_path={cfg.drop_path}) (or "
                         f"pass drop_path={built} to fit).")
    outputs = getattr(model, "num_classes", None)
    for data in (train_data, test_data, val_data):
        if data is not None and outputs is not None and data.num_classes > outputs:
            raise ValueError(f"{data.info.title} {data.split} has {data.num_classes} classes but the model has "
                             f"{outputs} outputs. Build the model with num_classes={data.num_classes}.")
    if test_data is not None:
        check_test_set(train_data, test_data, stacklevel=3)
    if val_data is not None:
        if val_data.dataset != train_data.dataset:
            raise ValueError(f"The validation split is {val_data.info.title}, the training data "
                             f"{train_data.info.title}: hold the validation images out of the training set's own "
                             "data (course_lib.data.hold_out).")
        check_test_set(train_data, val_data, stacklevel=3)


def _param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    """Decay only weight matrices/kernels; norms, biases, position embeddings and class tokens are exempt."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.dim() >= 2 and "pos_embed" not in name and "cls_token" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.peak_lr, betas=cfg.betas)
    if cfg.optimizer == "adam":   # Adam's weight decay is L2 in the gradient, as torch.optim.Adam does it
        return torch.optim.Adam(groups, lr=cfg.peak_lr, betas=cfg.betas)
    return torch.optim.SGD(groups, lr=cfg.peak_lr, momentum=cfg.momentum, nesterov=True)


def _prepare(model: nn.Module, train_data: ImageSet, test_data: ImageSet | None, cfg: TrainConfig,
             extra_losses: Sequence[ExtraLoss], device: torch.device, val_data: ImageSet | None = None) -> _Run:
    """Move everything to the device; build loaders, optimiser, schedule and precision."""
    channels_last = getattr(model, "prefers_channels_last", False)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    extra = nn.ModuleList(extra_losses).to(device)
    preprocess = Preprocessing.for_dataset(train_data.dataset, cfg.normalize)
    train_loader = GPULoader(train_data, cfg.batch_size, device, train=True, augment=cfg.augment, hflip=cfg.hflip,
                             randaugment=cfg.randaugment, random_erasing=cfg.random_erasing, preprocess=preprocess,
                             drop_last=drops_ragged_batch(len(train_data), cfg.batch_size), seed=cfg.seed,
                             channels_last=channels_last)
    def eval_loader(data):
        return None if data is None else GPULoader(data, cfg.eval_batch_size, device, preprocess=preprocess,
                                                   channels_last=channels_last)
    test_loader = eval_loader(test_data)
    steps = len(train_loader)
    total_steps = round((cfg.schedule_epochs or cfg.epochs) * steps)
    warmup_steps = round(cfg.warmup_epochs * steps)
    optimizer = _optimizer(_param_groups([model, extra], cfg.weight_decay), cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, total_steps, warmup_steps, cfg.schedule, cfg.min_lr / cfg.lr))
    prec = precision(device, cfg.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=prec.needs_scaler)
    autocast = torch.autocast(device.type, dtype=prec.dtype, enabled=prec.dtype is not None)
    return _Run(model, extra, cfg, device, train_loader, test_loader, optimizer, scheduler, prec, scaler, autocast,
                getattr(model, "num_classes", None) or train_data.num_classes,
                eval_loader(val_data), eval_loader(train_data) if val_data is not None else None)


def _resume(run: _Run, path: Path | None, identity: dict, progress: bool) -> tuple[History, int]:
    """(history, first epoch to train): from a checkpoint made by this very run, else from scratch."""
    if path is None or not path.exists():
        return History(), 0
    state = load_resumable(path, run.model, identity, run.device)
    run.model.load_state_dict(state["model"])
    run.extra_losses.load_state_dict(state["extra_loss_state"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    history, start = History.from_dict(state["history"]), state["epoch"] + 1
    if progress and start < run.cfg.epochs:
        print(f"Resuming from {path} after epoch {start}/{run.cfg.epochs}.")
    return history, start


def _check_finite(run: _Run, values: torch.Tensor, epoch: int, since: int, upto: int) -> None:
    """One host sync: raise FloatingPointError naming the term and step (of ``since..upto``) where a loss or the
    weights went bad."""
    finite = torch.isfinite(values[since:upto]).all(dim=1)
    weights_ok = torch.stack([torch.isfinite(p).all() for p in run.params]).all()
    if bool(finite.all() & weights_ok):
        return
    steps = len(run.train_loader)
    names = ["the cross-entropy"] + [f"the {t.name} loss" for t in run.extra_losses]
    if not bool(finite.all()):
        bad = since + int((~finite).nonzero()[0])
        term = int((~torch.isfinite(values[bad])).nonzero()[0])
        what = f"{names[term]} became {values[bad, term].item()} at epoch {epoch + 1}, step {bad + 1} of {steps}"
    else:
        what = f"the model's weights became non-finite by epoch {epoch + 1}, step {upto} of {steps}"
    raise FloatingPointError(
        f"Training stopped: {what} (global step {epoch * steps + upto}). Lower the learning rate (peak now "
        f"{run.cfg.peak_lr:.3g}), keep warm-up and gradient clipping on, or check the inputs"
        + (" and the extra loss's weight." if len(run.extra_losses) else "."))


def _train_epoch(run: _Run, epoch: int, bar) -> dict:
    """One pass over the training data, one :func:`train_step` per batch; returns the epoch's mean loss, accuracy
    and extra losses."""
    cfg = run.cfg
    torch.manual_seed(cfg.seed * 1_000_003 + epoch)   # dropout / drop-path / DRLoc sampling of this epoch
    run.train_loader.set_epoch(epoch)
    mixing = cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0
    mixer = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch + 500_009) if mixing else None
    weights = [t.weight_at(epoch, cfg.epochs) for t in run.extra_losses]
    steps = len(run.train_loader)
    values = torch.zeros(steps, 1 + len(run.extra_losses), device=run.device)
    totals = torch.zeros(steps, device=run.device)
    correct = torch.zeros((), device=run.device, dtype=torch.long)
    seen, start = 0, time.perf_counter()
    with train_mode(run.extra_losses, run.model):
        for step, (x, y) in enumerate(run.train_loader):
            targets = y
            if mixer is not None:
                x, targets = aug.mixup_cutmix(x, y, run.num_classes, cfg.mixup_alpha, cfg.cutmix_alpha, 0.5,
                                              cfg.label_smoothing, mixer)
            totals[step], values[step], logits = train_step(
                run.model, (x, y, targets), run.optimizer, run.scaler, list(zip(weights, run.extra_losses)),
                label_smoothing=cfg.label_smoothing, grad_clip=cfg.grad_clip, autocast=run.autocast)
            run.scheduler.step()
            correct += (logits.argmax(dim=1) == y).sum()
            seen += len(y)
            if step % 20 == 19 or step == steps - 1:      # one host sync every 20 steps
                _check_finite(run, values, epoch, step - step % 20, step + 1)
                if bar is not None:
                    bar.update(epoch * steps + step + 1 - bar.n)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{totals[step].item():.3f}")
    return {"loss": totals.mean().item(), "acc": 100.0 * correct.item() / max(1, seen), "weights": weights,
            "extra": values[:, 1:].mean(dim=0).tolist(), "seconds": time.perf_counter() - start, "images": seen}


def _evaluations(run: _Run, epoch: int) -> dict:
    """The evaluations due after ``epoch``: every ``eval_every`` epochs and after the last. With a validation split,
    those are the validation images and the clean training images, and the test set is evaluated once, after the
    last epoch (it chooses nothing, so its curve would only tempt)."""
    last = epoch == run.cfg.epochs - 1
    due = (epoch + 1) % run.cfg.eval_every == 0 or last
    out = {}
    if due and run.val_loader is not None:
        out["val"] = evaluate_loader(run.model, run.val_loader, run.prec)
        out["train_clean"] = evaluate_loader(run.model, run.clean_loader, run.prec)
    if run.test_loader is not None and (last if run.val_loader is not None else due):
        out["test"] = evaluate_loader(run.model, run.test_loader, run.prec)
    return out


def _record_epoch(history: History, run: _Run, epoch: int, stats: dict, evaluations: dict) -> None:
    test_loss, test_acc, hits = evaluations.get("test", (None, None, None))
    history.epoch.append(epoch + 1)
    history.train_loss.append(stats["loss"])
    history.train_acc.append(stats["acc"])
    history.test_loss.append(test_loss)
    history.test_acc.append(test_acc)
    history.lr.append(run.optimizer.param_groups[0]["lr"])
    history.seconds.append(stats["seconds"])
    history.steps.append((epoch + 1) * len(run.train_loader))
    for term, value, weight in zip(run.extra_losses, stats["extra"], stats["weights"]):
        history.extra.setdefault(term.name, []).append(value)
        history.extra_weight.setdefault(term.name, []).append(weight)
    if hits is not None:
        history.test_correct = pack_bits(hits)
    if run.val_loader is not None:
        for name in ("val", "train_clean"):
            loss, acc, _ = evaluations.get(name, (None, None, None))
            getattr(history, f"{name}_loss").append(loss)
            getattr(history, f"{name}_acc").append(acc)
        if "val" in evaluations:      # per image, so two budgets compare paired on the same validation images
            history.val_correct = pack_bits(evaluations["val"][2])


def _print_epoch(history: History, epochs: int, images: int) -> None:
    extra = "".join(f"  {k} {v[-1]:.4f}" for k, v in history.extra.items())
    test = f"  test acc {history.test_acc[-1]:5.1f}%" if history.test_acc[-1] is not None else ""
    if history.val_acc and history.val_acc[-1] is not None:
        test = (f"  clean train acc {history.train_clean_acc[-1]:5.1f}%  val acc {history.val_acc[-1]:5.1f}%"
                + test)
    seconds = history.seconds[-1]
    print(f"epoch {history.epoch[-1]:>3}/{epochs}  train loss {history.train_loss[-1]:.4f}  "
          f"train acc {history.train_acc[-1]:5.1f}%{test}{extra}  ({seconds:.1f}s, {images / seconds:,.0f} img/s)",
          flush=True)


def _checkpoint_state(run: _Run, history: History, epoch: int, identity: dict) -> dict:
    return {"signature": identity["model"], "identity": identity,
            "extra_losses": [type(t).__name__ for t in run.extra_losses],
            "model": run.model.state_dict(), "extra_loss_state": run.extra_losses.state_dict(),
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict() or None, "history": history.to_dict(),
            "epoch": epoch, "config": asdict(run.cfg)}


@contextmanager
def _progress_bar(run: _Run, start_epoch: int, enabled: bool):
    """A step progress bar (tqdm in notebooks, a text bar every 30 s in logs), or None."""
    if not enabled or start_epoch >= run.cfg.epochs:
        yield None
        return
    plain = plain_progress()
    steps = len(run.train_loader)
    bar = (text_tqdm if plain else auto_tqdm)(
        total=run.cfg.epochs * steps, initial=start_epoch * steps, desc=type(run.model).__name__, unit="step",
        mininterval=30.0 if plain else 0.5, disable=plain, leave=False)
    try:
        yield bar
    finally:
        bar.close()


def fit(model: nn.Module, train_data: ImageSet, test_data: ImageSet | None = None,
        config: TrainConfig | None = None, *, val_data: ImageSet | None = None,
        extra_losses: Sequence[ExtraLoss] = (),
        checkpoint: str | Path | None = None, resume: bool = True, device: str | torch.device | None = None,
        progress: bool = True, on_epoch_end: Callable[[History], bool] | None = None, **overrides) -> History:
    """Train ``model`` on ``train_data``, evaluating on ``test_data`` every ``eval_every`` epochs and at the end.

    Args:
        model: any module; ours expose ``forward_blocks``/``norm``/``forward_head`` so extra losses read tokens.
        train_data, test_data: :class:`~course_lib.data.ImageSet` (uint8 images); they are moved to the device once.
            A test set that shares images with the training set is used but warned about
            (:class:`OverlappingTestSetWarning`): its accuracy measures memorisation.
        val_data: a validation split held out of the training data's own split (:func:`course_lib.data.hold_out`).
            With it, every evaluation measures the validation images and the training images without augmentation
            (``History.val_acc``, ``History.train_clean_acc``), and the test set is evaluated once, at the end.
        config: a :class:`TrainConfig` (default ``RECIPES["course"]``); keyword ``overrides`` replace its fields,
            e.g. ``fit(model, train, test, epochs=5, lr=3e-4)``.
        extra_losses: :class:`ExtraLoss` instances added to the cross-entropy (e.g. ``DRLocLoss``).
        checkpoint: file to save after every epoch and to resume from (if ``resume`` and it exists). A finished
            checkpoint of the same run makes ``fit`` return at once with the stored history.
        resume: False trains afresh even if ``checkpoint`` exists (and overwrites it).
        device: default CUDA if available, else CPU.
        progress: show a progress bar (text with ``COURSE_PLAIN_PROGRESS=1``) and print one line per epoch.
        on_epoch_end: called with the history after every epoch (and its checkpoint); returning True stops
            training there, e.g. ``lambda h: (h.test_acc[-1] or 0) >= 93`` for a time-to-accuracy run.

    Returns:
        The :class:`History` of the whole run (including epochs done before a resume).

    Raises:
        CheckpointMismatchError: ``checkpoint`` was made by another model, recipe, data or extra loss.
        FloatingPointError: a loss term or the weights became NaN or infinite; the message gives term and step.
        ValueError: a bad setting (every field of the recipe is checked before any training), or a test set of
            another data set than the training set.
        CheckpointSaveError: a checkpoint could not be written (e.g. a full disk); the message names the folder.
    """
    cfg = replace(config or RECIPES["course"], **overrides)
    _check_inputs(model, train_data, test_data, extra_losses, cfg, val_data)
    run = _prepare(model, train_data, test_data, cfg, extra_losses, get_device(device), val_data)
    identity = fit_identity(model, train_data, test_data, cfg, extra_losses, val_data)
    path = Path(checkpoint) if checkpoint is not None else None
    history, start_epoch = _resume(run, path, identity, progress) if resume else (History(), 0)
    if start_epoch and on_epoch_end is not None and on_epoch_end(history):
        return history    # a run stopped early and saved: running it again must not add an epoch
    with _progress_bar(run, start_epoch, progress) as bar:
        for epoch in range(start_epoch, cfg.epochs):
            stats = _train_epoch(run, epoch, bar)
            _record_epoch(history, run, epoch, stats, _evaluations(run, epoch))
            if progress:
                _print_epoch(history, cfg.epochs, stats["images"])
            if path is not None:
                save_checkpoint(path, _checkpoint_state(run, history, epoch, identity))
            if on_epoch_end is not None and on_epoch_end(history):
                break
    return history
