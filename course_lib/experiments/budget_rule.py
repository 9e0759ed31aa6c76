"""The second CPU study's budget rule (profile ``study2``, issue 28): when is a model *trained*, and how much
training does every run get?

    memorised    its training accuracy reached 99 % with a test accuracy at least 20 points lower;
    fits its data  its clean training accuracy (the training images without augmentation) reached 90 %;
    at plateau   not fitted, but the same run with twice the epochs gained less than one point of validation
                 accuracy (more budget would not help);
    under-fitted neither: no data-size conclusion may be drawn from it.

The budget is chosen on the validation split only (100 images per class held out of CIFAR-10's training
images; the test set chooses nothing), with the same effort for both families, at the cheapest size:

1. three learning rates at :data:`TUNING_EPOCHS` epochs (the tuning grid);
2. the best rate by final validation accuracy; then its run with twice the epochs (the doubling check): the
   longer budget is kept if it gains at least one point, and doubled again only while the kept run does not yet
   fit its training images (a model is trained once it fits them, or once doubling gains less than a point);
3. that (epochs, learning rate) is kept for every size and seed of the family (compute grows with the data).

The DRLoc comparison (:data:`DRLOC`) has a budget of its own, on the same ladder: ViT + DRLoc starts from the ViT's
budget and its epochs are doubled, at the cheapest size, until it fits its training images or doubling stops gaining
a point. Both of its sides, ViT + DRLoc and the plain ViT, train with it, so that the two differ only in the DRLoc
loss, and both are trained (the extra loss slows fitting: at the ViT's own budget ViT + DRLoc did not fit).

:func:`fit_verdict` is what the book prints beside a run's test accuracy; :func:`choose_budget` is step 2 from
the records; :func:`progress_table` is the study's progress, written to ``course_lib/records/STUDY2.md``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ..data import DATASETS
from ..files import atomic_write_text
from ..history import unpack_bits
from ..profiles import get_profile
from ..stats import accuracy_interval
from .records import RECORDS_OF_RECORD, load_records
from .runs import RunSpec

__all__ = ["DRLOC", "FIT_THRESHOLD", "MEMORISED", "MEMORISED_GAP", "DOUBLING_GAIN", "TUNING_SIZE", "TUNING_LRS",
           "TUNING_EPOCHS", "FitVerdict", "train_accuracy", "fit_verdict", "tuning_table", "choose_budget",
           "tuned_budget", "tuning_grid", "study2_queue", "progress_table", "write_progress"]

# The tuning grid: at the cheapest size, the same effort for both families; three learning rates around the course
# recipe's 1e-3 at 50 epochs (about 15 min for the ViT, 30 for ResNet-18 on one thread), then the doubling check.
TUNING_SIZE = 100
TUNING_LRS = (1e-3, 5e-4, 2e-3)
TUNING_EPOCHS = 50
FIT_THRESHOLD = 90.0      # % clean training accuracy: the model fits its training set
MEMORISED = 99.0          # ... "memorised" from this training accuracy
MEMORISED_GAP = 20.0      # ... with a test accuracy at least this many points lower
DOUBLING_GAIN = 1.0       # points of validation accuracy that twice the epochs must gain to be worth it
DRLOC = "vit+drloc"       # the budget of the DRLoc comparison (both sides), beside the families "vit" and "resnet18"


@dataclass(frozen=True)
class FitVerdict:
    """``word``: "memorised", "fits its data", "at plateau", "under-fitted" or "unknown" (no training accuracy
    recorded); ``sentence``: the numbers behind it."""

    word: str
    sentence: str

    @property
    def trained(self) -> bool:
        """May a conclusion be drawn from this run?"""
        return self.word not in ("under-fitted", "unknown")


def _doubled(record: dict, records: list[dict], seed: int | None = None, factor: int = 2) -> dict | None:
    """The run that is ``record`` with ``factor`` times its epochs (same model, data, learning rate and seed, or
    seed ``seed``), if recorded."""
    spec = record["spec"]
    for other in records:
        o = other["spec"]
        if (other.get("final_val_acc") is not None and other["epochs"] == factor * record["epochs"]
                and all(o.get(k) == spec.get(k) for k in spec if k not in ("epochs", "seed"))
                and o.get("seed") == (spec.get("seed") if seed is None else seed)):
            return other
    return None


def _doubling_check(record: dict, records: list[dict]) -> tuple[dict, dict, str] | None:
    """(base, doubled, note) of ``record``'s doubling check: its own, else the one made on seed 0 of the same run
    (the budget's check: every seed trains with the budget it chose)."""
    doubled = _doubled(record, records)
    if doubled is not None:
        return record, doubled, ""
    base = _doubled(record, records, seed=0, factor=1) if record["spec"].get("seed") else None
    doubled = _doubled(base, records) if base is not None else None
    return (base, doubled, " (checked on seed 0 of the same run)") if doubled is not None else None


RUNNING = "running, augmented"


def train_accuracy(record: dict) -> tuple[float | None, str]:
    """(training accuracy in %, how it was measured): the clean accuracy on the training images when the record
    has it ("clean"), else the last running accuracy of the training loop, on augmented images while the weights
    changed (:data:`RUNNING`; records made before the validation split), else (None, "not recorded")."""
    if record.get("final_train_clean_acc") is not None:
        return float(record["final_train_clean_acc"]), "clean"
    running = [a for a in record["history"].get("train_acc", []) if a is not None]
    return (float(running[-1]), RUNNING) if running else (None, "not recorded")


def fit_verdict(record: dict, records: list[dict] | None = None) -> FitVerdict:
    """How well ``record``'s model fits its training data (see the module docstring). ``records``: where to look
    for its doubled run (default: every record)."""
    train, how = train_accuracy(record)
    if train is None:
        return FitVerdict("unknown", "no training accuracy recorded")
    what = "clean training accuracy" if how == "clean" else f"training accuracy ({how})"
    where = f"{what} {train:.1f} % after {record['epochs']} epochs"
    if train >= MEMORISED and train - record["final_test_acc"] >= MEMORISED_GAP:
        return FitVerdict("memorised", f"memorised its training set: {where}, test "
                                       f"{record['final_test_acc']:.1f} %")
    if train >= FIT_THRESHOLD:
        return FitVerdict("fits its data", f"fits its training set: {where}")
    check = _doubling_check(record, load_records() if records is None else records)
    if check is not None and record.get("final_val_acc") is not None:
        base, doubled, note = check
        gain = doubled["final_val_acc"] - base["final_val_acc"]
        sentence = (f"{where}; twice the epochs changed validation accuracy by {gain:+.1f} points{note} "
                    f"({base['final_val_acc']:.1f} -> {doubled['final_val_acc']:.1f} % on "
                    f"{base['val_images']:,} validation images)")
        if gain < DOUBLING_GAIN:
            return FitVerdict("at plateau", f"at its plateau: {sentence}")
        return FitVerdict("under-fitted", f"under-fitted: {sentence}")
    return FitVerdict("under-fitted", f"under-fitted: {where}, below {FIT_THRESHOLD:.0f} %, and no run with twice "
                                      "the epochs to show that more training would not help")


def _tuning_records(records: list[dict], model: str, size: int) -> list[dict]:
    return sorted((r for r in records if r["spec"]["profile"] == "study2" and r["spec"]["model"] == model
                   and not r["spec"].get("drloc") and r["spec"].get("train_per_class") == size
                   and r["spec"]["seed"] == 0 and r["spec"].get("lr") is not None
                   and r.get("final_val_acc") is not None),
                  key=lambda r: (r["epochs"], r["spec"]["lr"]))


def _drloc_ladder(records: list[dict], size: int, lr: float) -> dict[int, dict]:
    """{epochs: record} of ViT + DRLoc's seed-0 runs at ``size`` with learning rate ``lr``: its doubling ladder."""
    return {r["epochs"]: r for r in records if r.get("final_val_acc") is not None
            and r["key"] == _spec("vit", size, (r["epochs"], lr), drloc=True).key}


def tuning_table(records: list[dict] | None = None, size: int = 100,
                 models: tuple[str, ...] = ("vit", "resnet18", DRLOC)) -> list[dict]:
    """One row per tuning run (with :data:`DRLOC`: ViT + DRLoc's doubling ladder too): model, epochs, learning
    rate, clean training / validation / best validation accuracy, the fit verdict; the test accuracy is deliberately
    absent (it chooses nothing)."""
    records = load_records(folders=[RECORDS_OF_RECORD]) if records is None else records
    rows = []
    for model in models:
        if model == DRLOC:
            vit, _ = choose_budget("vit", records, size)
            runs = [] if vit is None else [r for _, r in sorted(_drloc_ladder(records, size, vit[1]).items())]
        else:
            runs = _tuning_records(records, model, size)
        for r in runs:
            rows.append({"model": r["label"], "epochs": r["epochs"], "lr": r["spec"]["lr"],
                         "train_clean_acc": r["final_train_clean_acc"], "val_acc": r["final_val_acc"],
                         "best_val_acc": r["best_val_acc"], "fit": fit_verdict(r, records).word,
                         "minutes": r["train_seconds"] / 60, "key": r["key"]})
    return rows


def _half_width(a: dict, b: dict) -> float:
    """Half-width (points) of the normal 95 % interval of the difference of two validation accuracies: paired over
    the same validation images where both records keep their per-image results (``history.val_correct``), else
    treated as independent (wider)."""
    n = a["val_images"]
    bits_a, bits_b = a["history"].get("val_correct"), b["history"].get("val_correct")
    if bits_a and bits_b:
        diff = unpack_bits(bits_a, n).double() - unpack_bits(bits_b, n).double()
        return 196 * (diff.var(unbiased=True).item() / n) ** 0.5
    p, q = a["final_val_acc"] / 100, b["final_val_acc"] / 100
    return 196 * ((p * (1 - p) + q * (1 - q)) / n) ** 0.5


def choose_budget(model: str, records: list[dict] | None = None, size: int = 100,
                  base_epochs: int = 50) -> tuple[tuple[int, float] | None, str]:
    """((epochs, learning rate) for ``model``, the reason in words), or (None, what is missing) while the tuning
    is not complete. The rate: best final validation accuracy at ``base_epochs`` (ties go to the smaller rate);
    the epochs: doubled while doubling gains at least :data:`DOUBLING_GAIN` points and the longer run does not
    fit its training images yet (each doubling must be recorded: a missing one is asked for). ``model`` may be
    :data:`DRLOC`, the DRLoc comparison's budget (:func:`_drloc_budget`)."""
    records = load_records(folders=[RECORDS_OF_RECORD]) if records is None else records
    if model == DRLOC:
        return _drloc_budget(records, size, base_epochs)
    runs = _tuning_records(records, model, size)
    grid = [r for r in runs if r["epochs"] == base_epochs]
    if len(grid) < 3:
        return None, f"{len(grid)} of 3 learning rates tuned at {base_epochs} epochs"
    ranked = sorted(grid, key=lambda r: (r["final_val_acc"], -r["spec"]["lr"]), reverse=True)
    best, second = ranked[0], ranked[1]
    lr = best["spec"]["lr"]
    words = [f"learning rate {lr:g}: best validation accuracy at {base_epochs} epochs ("
             + ", ".join(f"{r['spec']['lr']:g}: {r['final_val_acc']:.1f} %" for r in grid) + ")"]
    gap, half = best["final_val_acc"] - second["final_val_acc"], _half_width(best, second)
    if gap < half:
        words[0] += (f", {gap:.1f} points ahead of {second['spec']['lr']:g}, within the ±{half:.1f}-point 95 % "
                     f"interval of a difference on {best['val_images']:,} validation images: a tie that the rule "
                     "breaks, not a measured advantage")
    at = {r["epochs"]: r for r in runs if r["spec"]["lr"] == lr}
    return _climb(at, base_epochs, lr, words, fit_first=False)


def _climb(at: dict[int, dict], epochs: int, lr: float, words: list[str],
           fit_first: bool) -> tuple[tuple[int, float] | None, str]:
    """The doubling ladder from ``epochs`` over the seed-0 runs ``at`` ({epochs: record}): stop where a run fits its
    training images (checked first at the start with ``fit_first``) or where twice its epochs gain less than
    :data:`DOUBLING_GAIN` points of validation accuracy; (None, what to train next) where a rung is missing."""
    current = at.get(epochs)
    while True:
        if current is None:
            return None, "; ".join(words + [f"its run at {epochs} epochs is not made yet"])
        clean, how = train_accuracy(current)
        if fit_first and how == "clean" and clean >= FIT_THRESHOLD:      # trained: it fits, no doubling asked for
            return (epochs, lr), "; ".join(words + [f"at {epochs} epochs it fits its training images ({clean:.1f} % "
                                                    f"clean training accuracy), so {epochs} epochs"])
        doubled = at.get(2 * epochs)
        if doubled is None:
            return None, "; ".join(words + [f"the doubling check ({2 * epochs} epochs at {lr:g}) is not run yet"])
        gain = doubled["final_val_acc"] - current["final_val_acc"]
        words.append(f"{2 * epochs} epochs {'gained' if gain >= 0 else 'lost'} {abs(gain):.1f} points of "
                     f"validation accuracy over {epochs}")
        if gain < DOUBLING_GAIN:
            return (epochs, lr), "; ".join(words + [f"so {epochs} epochs"])
        epochs, current, fit_first = 2 * epochs, doubled, True


def _drloc_budget(records: list[dict], size: int, base_epochs: int) -> tuple[tuple[int, float] | None, str]:
    """The DRLoc comparison's budget: the ViT's learning rate, and epochs from the ViT's budget up the doubling
    ladder of ViT + DRLoc's own seed-0 runs at ``size`` (see the module docstring)."""
    vit, why = choose_budget("vit", records, size, base_epochs)
    if vit is None:
        return None, f"the ViT's budget first ({why})"
    epochs, lr = vit
    at = _drloc_ladder(records, size, lr)
    clean = train_accuracy(at[epochs])[0] if epochs in at else None
    start = (f"ViT + DRLoc from the ViT's budget ({epochs} epochs at {lr:g})"
             + (f", where its clean training accuracy is {clean:.1f} %" if clean is not None else ""))
    return _climb(at, epochs, lr, [start], fit_first=True)


def _records_stamp() -> tuple:
    """The records of record as they are now (each file's name and modification time), so that a budget read from
    them is read again only after one of them changed."""
    folder = Path(RECORDS_OF_RECORD)
    return str(folder), tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.json")))


@functools.lru_cache(maxsize=8)
def _chosen(model: str, stamp: tuple) -> tuple[tuple[int, float] | None, str]:
    """:func:`choose_budget` on the records of record in the state ``stamp`` (a plan asks for it once per run)."""
    return choose_budget(model)


def tuned_budget(model: str, records: list[dict] | None = None) -> tuple[int, float]:
    """(epochs, learning rate) that the tuning chose for ``model`` (:func:`choose_budget` on the records of
    record): what every run of the family trains with, at every size and seed (``model`` :data:`DRLOC`: both sides
    of the DRLoc comparison). A clear error while the tuning is not complete."""
    budget, why = choose_budget(model, records) if records is not None else _chosen(model, _records_stamp())
    if budget is None:
        raise RuntimeError(f"The second study has not chosen the budget of {model!r} yet: {why}. Train the tuning "
                           "runs first: python -m course_lib.experiments.study run --queue study2 --data-root data")
    return budget


def _spec(model: str, n: int, budget: tuple[int, float], seed: int = 0, drloc: bool = False,
          epochs: int | None = None) -> RunSpec:
    extra = {"drloc": True, "drloc_schedule": "official"} if drloc else {}
    return RunSpec(model, "cifar10", get_profile("study2"), train_per_class=n, epochs=epochs or budget[0],
                   lr=budget[1], seed=seed, **extra)


def tuning_grid(models: tuple[str, ...] = ("vit", "resnet18")) -> list[RunSpec]:
    """The tuning runs at :data:`TUNING_SIZE`, cheapest and most informative first: the course recipe's rate for
    every family, then the others."""
    return [_spec(model, TUNING_SIZE, (TUNING_EPOCHS, lr)) for lr in TUNING_LRS for model in models]


def study2_queue(records: list[dict] | None = None) -> list[tuple[RunSpec, bool]]:
    """[(run, planned)] in priority order: the tuning grid and doubling checks at 100 per class, for each family and
    for the DRLoc comparison (ViT + DRLoc's ladder from the ViT's budget, :func:`_drloc_budget`); seed 0 of every
    curve point and of the DRLoc pair (ViT + DRLoc and its ViT, both with the DRLoc comparison's budget); the
    doubling checks at the largest size (each dropped once its base run fits its training images: a fitted model is
    trained; planned once that run shows it does not); the other seeds (three per curve point; the DRLoc pair over
    five seeds at 100 per class and three at 500). ``planned`` is False where the run depends on a budget not chosen
    yet (it is shown with the course recipe's rate and :data:`TUNING_EPOCHS` epochs, a placeholder)."""
    records = load_records(folders=[RECORDS_OF_RECORD]) if records is None else records
    queue: list[tuple[RunSpec, bool]] = []
    budgets = {}
    for model in ("vit", "resnet18"):
        queue += [(spec, True) for spec in tuning_grid((model,))]
        budget, _ = choose_budget(model, records)
        grid = _tuning_records(records, model, TUNING_SIZE)
        at_base = [r for r in grid if r["epochs"] == TUNING_EPOCHS]
        if len(at_base) == len(TUNING_LRS):     # the doubling checks: those made, and the next one if still due
            best = max(at_base, key=lambda r: (r["final_val_acc"], -r["spec"]["lr"]))["spec"]["lr"]
            made = sorted({r["epochs"] for r in grid if r["spec"]["lr"] == best and r["epochs"] > TUNING_EPOCHS})
            due = [] if budget is not None else [2 * max([TUNING_EPOCHS, *made])]
            queue += [(_spec(model, TUNING_SIZE, (e, best)), True) for e in made + due]
        budgets[model] = (budget or (TUNING_EPOCHS, 1e-3), budget is not None)
    (vit_epochs, lr), vit_chosen = budgets["vit"]
    drloc_budget, _ = choose_budget(DRLOC, records)
    ladder = sorted(_drloc_ladder(records, TUNING_SIZE, lr))
    due = [] if drloc_budget is not None else [2 * max(ladder) if ladder else vit_epochs]
    queue += [(_spec("vit", TUNING_SIZE, (e, lr), drloc=True), vit_chosen) for e in ladder + due]
    budgets[DRLOC] = (drloc_budget or (vit_epochs, lr), drloc_budget is not None)
    profile = get_profile("study2")
    sizes, seeds, drloc_sizes = profile.curve_sizes, profile.curve_seeds, profile.drloc_curve_sizes
    largest = sizes[-1]

    def add(family, n, seed, drloc=False, epochs=None):
        budget, planned = budgets[family]
        queue.append((_spec("vit" if family == DRLOC else family, n, budget, seed, drloc, epochs), planned))

    def doubling_check(family, n, drloc=False):
        """Twice the epochs of seed 0 at ``n``, unless its base run fits its training images (a fitted model is
        trained); planned once the base run is recorded and shows it does not."""
        budget, planned = budgets[family]
        model = "vit" if family == DRLOC else family
        base = next((r for r in records if r["key"] == _spec(model, n, budget, drloc=drloc).key), None)
        if base is None or (train_accuracy(base)[0] or 0.0) < FIT_THRESHOLD:
            queue.append((_spec(model, n, budget, drloc=drloc, epochs=2 * budget[0]), planned and base is not None))

    def point(n, seed):
        add("vit", n, seed), add("resnet18", n, seed)
        if n in drloc_sizes:                   # the DRLoc pair: both sides with the DRLoc comparison's budget
            add(DRLOC, n, seed, drloc=True), add(DRLOC, n, seed)

    for n in sizes:
        point(n, 0)
    for family, drloc in (("vit", False), ("resnet18", False), (DRLOC, True), (DRLOC, False)):
        doubling_check(family, largest, drloc)             # ... at the largest size
    for seed in seeds[1:]:
        for n in sizes:
            point(n, seed)
    for seed in (3, 4):
        add(DRLOC, TUNING_SIZE, seed, drloc=True), add(DRLOC, TUNING_SIZE, seed)
    first: dict[str, tuple[RunSpec, bool]] = {}
    for spec, planned in queue:             # a run the tuning already made is the curve's run, not a second one
        first.setdefault(spec.key, (spec, planned))
    return list(first.values())


def progress_table(queue: list[tuple[RunSpec, bool]], records: list[dict],
                   images_per_second: dict[str, float]) -> str:
    """The study's progress as Markdown: runs done and left, and the CPU-hours left at the measured one-thread
    throughput of each model (``images_per_second``: {"vit": ..., "resnet18": ..., "vit+drloc": ...})."""
    done = {r["key"]: r for r in records}
    lines = ["| run | epochs | state | clean train acc | val acc | fit | img/s | train time | test acc (95 % CI) |",
             "|---|---|---|---|---|---|---|---|---|"]
    left_hours = {True: 0.0, False: 0.0}      # planned, waiting
    for spec, planned in queue:
        epochs, n_train = spec.epochs, (spec.train_per_class or 500) * DATASETS["cifar10"].num_classes
        r = done.get(spec.key)
        if r is not None:
            lines.append(f"| `{spec.key}` | {r['epochs']} | done | {r['final_train_clean_acc']:.1f} % | "
                         f"{r['final_val_acc']:.1f} % | {fit_verdict(r, records).word} | {_measured(r)} |")
            continue
        model = "vit+drloc" if spec.drloc else spec.model
        hours = epochs * n_train / images_per_second[model] / 3600
        left_hours[planned] += hours
        state = f"to run (~{hours:.1f} CPU-h)" if planned else f"waiting (~{hours:.1f} CPU-h)"
        lines.append(f"| `{spec.key}` | {epochs} | {state} | | | | | | |")
    n_done = sum(1 for spec, _ in queue if spec.key in done)
    head = (f"Runs done: {n_done} of {len(queue)}; runs left: {len(queue) - n_done}, about "
            f"{left_hours[True]:.1f} CPU-hours planned and {left_hours[False]:.1f} waiting, at one thread "
            f"({', '.join(f'{k} {v:.0f} img/s' for k, v in images_per_second.items())}, "
            "training only; runs marked *waiting* wait for the tuning to choose their budget, or, for a doubling "
            "check at 500 per class, for its base run to show whether it fits its training images). The test "
            "accuracy is reported for the record; nothing is chosen by it.")
    return head + "\n\n" + "\n".join(lines) + "\n"


def _measured(record: dict) -> str:
    """Images per second, wall minutes of training, and the test accuracy with its exact 95 % interval (over the
    test images), as table cells."""
    rate = f"{record['images_per_second']:.0f}" if record.get("images_per_second") else "—"
    test = f"{record['final_test_acc']:.2f} %"
    if record.get("test_images"):
        n = record["test_images"]
        low, high = accuracy_interval(record["final_test_acc"], n)
        test += f" ({low:.1f}-{high:.1f}, {n:,} images)"
    return f"{rate} | {record['train_seconds'] / 60:.0f} min | {test}"


# One-thread training throughput (img/s) assumed for runs of a model that has no record yet (measured on the
# course's 2-core machines, 2026-12-07: ViT 56-60, ResNet-18 29-32; ViT + DRLoc about 0.8x the ViT).
DEFAULT_IMAGES_PER_SECOND = {"vit": 58.0, "resnet18": 31.0, "vit+drloc": 46.0}


def write_progress(records: list[dict] | None = None, path: Path = RECORDS_OF_RECORD / "STUDY2.md") -> Path:
    """Write the progress table of :func:`study2_queue` where the records of record are (the study driver commits
    it with each record that lands). Throughputs: the best of the model's recorded runs and the measured default
    (a shared core only ever slows a run down)."""
    records = load_records(folders=[RECORDS_OF_RECORD]) if records is None else records
    ours = [r for r in records if r["spec"]["profile"] == "study2"]
    rates = dict(DEFAULT_IMAGES_PER_SECOND)
    for model in rates:
        seen = [r["images_per_second"] for r in ours if r.get("images_per_second")
                and ("vit+drloc" if r["spec"].get("drloc") else r["spec"]["model"]) == model]
        rates[model] = max([rates[model], *seen])
    lines = [f"- {model}: {choose_budget(model, records)[1]}" for model in ("vit", "resnet18")]
    lines.append(f"- the DRLoc comparison (ViT + DRLoc and its ViT): {choose_budget(DRLOC, records)[1]}")
    queue = study2_queue(records)
    planned = {spec.key for spec, _ in queue}
    outside = [r for r in ours if r["key"] not in planned]
    extra = ("\n\nAlso recorded, outside the plan as it stands (trained under an earlier plan; kept, not used by "
             "the book's verdicts of record):\n\n" + "\n".join(
                 f"- `{r['key']}`: {r['epochs']} epochs, {fit_verdict(r, records).word}, test "
                 f"{r['final_test_acc']:.2f} %" for r in outside) + "\n") if outside else ""
    text = ("# The second CPU study: progress\n\nWritten by `course_lib.experiments.budget_rule.write_progress` "
            "from the records of record (profile `study2`) each time one lands.\n\nThe budget chosen on the "
            "validation split so far:\n\n" + "\n".join(lines) + "\n\n"
            + progress_table(queue, records, rates) + extra)
    atomic_write_text(path, text)
    return path
