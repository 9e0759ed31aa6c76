"""The claims ledger: each claim of the two papers beside the course's evidence for it, computed from the run records.

For every claim the ledger gives the computed verdict, the scale it was tested at (images per class of the full
training set, epochs, seeds, test images, profile) and whether the models fitted their training data, so that a
verdict is never read without the scale that limits it. Where that scale cannot show the claim, the verdict says
"not tested at a scale where it could show", with the reason. Nothing is typed in: change the records and the
ledger changes (``python tools/make_ledger.py`` rewrites the book's copy; a test checks that it is current).

How well a run fits its training data is :func:`course_lib.experiments.budget_rule.fit_verdict` (memorised /
fits its data / at plateau / under-fitted), the study's budget rule, used here as everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from .data import DATASETS
from .experiments.budget_rule import DRLOC, choose_budget, fit_verdict, train_accuracy
from .comparisons import compare_seeds, holm_by_claim
from .stats import accuracy_interval
from .tables import Table

__all__ = ["CLOSE", "above_chance",
           "Entry", "claims_ledger", "ledger_table", "ledger_details", "ledger_markdown", "NOT_TESTED"]

CLOSE = 2.0            # "close" (Zhu et al. on SVHN): the whole 95 % interval of the gap within this many points
NOT_TESTED = "not tested at a scale where it could show"
TUNED = ("lr", "epochs")   # chosen per model family (profile study2 tunes them on validation): never paired on


def above_chance(record: dict) -> bool:
    """Whether the run's exact 95 % interval lies above chance (1 / classes) on its test images."""
    low, _ = accuracy_interval(record["final_test_acc"], record["test_images"])
    return low > 100 / record["num_classes"]


# ----------------------------------------------------------------------------------------------------------------
# Grouping the records: runs that differ only in their seed are one point; two arms are paired by their settings

def _setting(record: dict, *drop: str) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in record["spec"].items() if k not in ("seed",) + drop))


def _groups(records: Sequence[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in sorted(records, key=lambda r: r["spec"]["seed"]):
        out.setdefault(_setting(r), []).append(r)
    return out


def _profiles_of_record(records: Sequence[dict], dataset: str) -> list[str]:
    """The profiles whose runs on ``dataset`` were tested on the most images, the one with the most seeds first
    (on CIFAR-10: both CPU studies, each of them evidence at its own budget rule)."""
    ranks: dict[str, tuple[int, int]] = {}
    for r in records:
        if r["spec"]["dataset"] == dataset:
            p = r["spec"]["profile"]
            seeds = sum(1 for s in records if s["key"].rsplit("-s", 1)[0] == r["key"].rsplit("-s", 1)[0])
            ranks[p] = max(ranks.get(p, (0, 0)), (r["test_images"], seeds))
    most = max((images for images, _ in ranks.values()), default=0)
    return sorted((p for p in ranks if ranks[p][0] == most), key=lambda p: ranks[p], reverse=True)


def _pick(groups: Sequence[list[dict]]) -> list[dict]:
    """Of several runs of one model at one size (e.g. a study's tuning runs beside its runs of record): the one with
    the most seeds, then the best validation accuracy (what tuning chooses by), then the profile's own budget."""
    def rank(g: list[dict]) -> tuple:
        val = [r.get("final_val_acc") for r in g]
        mean_val = sum(val) / len(val) if all(v is not None for v in val) else float("-inf")
        return len(g), mean_val, all(g[0]["spec"].get(k) is None for k in TUNED)
    return max(groups, key=rank)


def _arms(records: Sequence[dict], dataset: str, a: Callable[[dict], bool], b: Callable[[dict], bool],
          pair_on: Callable[[dict], tuple]) -> list[tuple[list[dict], list[dict]]]:
    """Pairs (arm A's seeds, arm B's seeds) of each profile of record, matched by ``pair_on``: profile by profile
    (:func:`_profiles_of_record`'s order), smallest size first; each side keeps only the seeds both have."""
    pairs = []
    for profile in _profiles_of_record(records, dataset):
        mine = [r for r in records if r["spec"]["dataset"] == dataset and r["spec"]["profile"] == profile]
        by_key: dict[tuple, tuple[list, list]] = {}
        for g in _groups(mine).values():
            for side, belongs in enumerate((a, b)):
                if belongs(g[0]):
                    by_key.setdefault(pair_on(g[0]), ([], []))[side].append(g)
        found = []
        for groups_a, groups_b in by_key.values():
            if groups_a and groups_b:
                ga, gb = _pick(groups_a), _pick(groups_b)
                seeds = {r["spec"]["seed"] for r in ga} & {r["spec"]["seed"] for r in gb}
                if seeds:
                    found.append(([r for r in ga if r["spec"]["seed"] in seeds],
                                  [r for r in gb if r["spec"]["seed"] in seeds]))
        pairs += sorted(found, key=lambda p: p[0][0]["images_per_class"])
    return pairs


def _at_budget(records: Sequence[dict], family: str) -> Callable[[dict], bool]:
    """Whether a run trained with the budget that the tuning chose for ``family`` ("vit", "resnet18" or
    :data:`DRLOC`, both sides of the DRLoc pair): a tuned study's tuning runs and runs of an earlier plan are not its
    evidence. Runs of profiles that tune nothing name no learning rate, and always pass; so do all runs while the
    tuning has not chosen (then :func:`_pick` takes the group with the most seeds)."""
    chosen, _ = choose_budget(family, list(records))
    return lambda r: chosen is None or r["spec"].get("lr") is None or (r["epochs"], r["spec"]["lr"]) == chosen


def _holm_per_study(pairs: Sequence[tuple[list[dict], list[dict]]], comparisons: Sequence) -> list:
    """The comparisons of one claim Holm-adjusted within each study (profile): a study's sizes are one family, as
    that study's curve and seed-level verdicts adjust them (each study is its own experiment, its own budget rule)."""
    return holm_by_claim(comparisons, families=[a[0]["spec"]["profile"] for a, _ in pairs])


def _is_vit(r: dict) -> bool:
    return r["spec"]["model"].startswith("vit") and not r["spec"].get("drloc")


def _is_resnet(r: dict) -> bool:
    return r["spec"]["model"] == "resnet18"


def _is_drloc(r: dict) -> bool:
    return r["spec"]["model"].startswith("vit") and bool(r["spec"].get("drloc"))


# ----------------------------------------------------------------------------------------------------------------
# Words

def scale(runs: Sequence[dict]) -> str:
    """Images per class (of the full training set), epochs, seeds, test images and profile of one arm's runs."""
    r = runs[0]
    info = DATASETS[r["spec"]["dataset"]]
    full = info.sizes["train"] // info.num_classes
    seeds = len(runs)
    stand_in = " (a stand-in drawn from the training split)" if "STAND-IN" in r["test_source"] else ""
    tuned = "".join(f", {k} {r['spec'][k]:g}" for k in TUNED if r["spec"].get(k) is not None)
    return (f"{r['images_per_class']:,} of {full:,} images/class, {r['epochs']} epochs ({r['steps']:,} steps), "
            f"{seeds} seed{'s' if seeds > 1 else ''}, {r['test_images']:,} test images{stand_in}, "
            f"profile '{r['spec']['profile']}'{tuned}")


def short_scale(runs: Sequence[dict]) -> str:
    """'500/class, 29 epochs, 1 seed, study' (the profile tells the two CPU studies' budget rules apart)."""
    r, seeds = runs[0], len(runs)
    return (f"{r['images_per_class']:,}/class, {r['epochs']} epochs, {seeds} seed{'s' if seeds > 1 else ''}, "
            f"{r['spec']['profile']}")


def short_fit(arms: Sequence[tuple[str, Sequence[dict]]]) -> str:
    """'ResNet-18 fits its data, ViT under-fitted' (several seeds: each seed's verdict once)."""
    return ", ".join(f"{label} {' / '.join(dict.fromkeys(fit_verdict(r).word for r in runs))}"
                     for label, runs in arms)


def fit_words(label: str, runs: Sequence[dict]) -> str:
    """'<label> under-fitted (train 63.4 %, running, augmented; test 54.7 %)', per seed when there are several."""
    parts = []
    for r in runs:
        train, how = train_accuracy(r)
        acc = "train not recorded" if train is None else f"train {train:.1f} %, {how}"
        parts.append(f"{fit_verdict(r).word} ({acc}; test {r['final_test_acc']:.1f} %)")
    return f"{label} " + "; ".join(parts)


def _fitted(runs: Sequence[dict]) -> bool:
    return all(fit_verdict(r).word in ("fits its data", "memorised", "at plateau") for r in runs)


def _chance_reason(arms: Sequence[tuple[str, Sequence[dict]]]) -> str | None:
    at_chance = [label for label, runs in arms if not all(above_chance(r) for r in runs)]
    if not at_chance:
        return None
    return f"{NOT_TESTED}: {' and '.join(at_chance)} not above chance on its test images"


@dataclass(frozen=True)
class Entry:
    """One line of the ledger: a claim, who made it, and the course's evidence."""

    claim: str
    source: str
    dataset: str
    verdict: str
    evidence: str
    scale: str
    fit: str
    size: str = "—"        # the scale in a few words (images per class, epochs, seeds)
    fitted: str = "—"      # the fit verdicts in a few words


# ----------------------------------------------------------------------------------------------------------------
# The claims

def _ordering(records: Sequence[dict], dataset: str) -> list[Entry]:
    """Zhu et al.: ViT below ResNet-18 (CIFAR-10, CIFAR-100), or close to it (SVHN)."""
    resnet, vit = _at_budget(records, "resnet18"), _at_budget(records, "vit")
    pairs = _arms(records, dataset, lambda r: _is_resnet(r) and resnet(r), lambda r: _is_vit(r) and vit(r),
                  lambda r: _setting(r, "model", *TUNED))
    comparisons = _holm_per_study(pairs, [compare_seeds(res, vit)[0] for res, vit in pairs])
    close = dataset == "svhn"
    claim = ("ViT close to ResNet-18 on SVHN (slower to train)" if close else
             f"ViT below ResNet-18 on {DATASETS[dataset].title}")
    entries = []
    for (res, vit), c in zip(pairs, comparisons):
        verdict = _chance_reason([("ResNet-18", res), ("the ViT", vit)])
        if verdict is None and close and not (_fitted(res) and _fitted(vit)):
            verdict = (f"{NOT_TESTED}: 'close' is about models trained to the end (500 epochs on 73,257 images), "
                       "and here a model did not fit its training data")
        if verdict is None:
            if close:
                verdict = ("agrees at this scale: within ±{CLOSE:g} points".format(CLOSE=CLOSE)
                           if -CLOSE <= c.low and c.high <= CLOSE else
                           "disagrees at this scale: ResNet-18 ahead" if c.significant and c.difference > 0 else
                           "undecided: the interval is too wide to call the two close or apart")
            else:
                verdict = ("agrees at this scale: ResNet-18 ahead" if c.significant and c.difference > 0 else
                           "disagrees at this scale: the ViT ahead" if c.significant else
                           "no difference this test can detect")
                if c.significant and not _fitted(vit):
                    verdict += " (the ViT under-fitted: the gap mixes data efficiency with slower fitting)"
        entries.append(Entry(claim, "Zhu et al. 2023", DATASETS[dataset].title, verdict, c.words(), scale(res),
                             fit_words("ResNet-18", res) + "; " + fit_words("ViT", vit), short_scale(res),
                             short_fit([("ResNet-18", res), ("ViT", vit)])))
    return entries


def _drloc(records: Sequence[dict], dataset: str) -> list[Entry]:
    """Liu et al.: DRLoc improves a ViT trained on small data (paired with the ViT of the same recipe)."""
    drloc_fields = ("drloc", "drloc_weight", "drloc_pairs", "drloc_schedule", "drloc_tokens")   # same budget
    at = _at_budget(records, DRLOC)
    pairs = _arms(records, dataset, lambda r: _is_drloc(r) and at(r), lambda r: _is_vit(r) and at(r),
                  lambda r: _setting(r, *drloc_fields))
    comparisons = _holm_per_study(pairs, [compare_seeds(d, v)[0] for d, v in pairs])
    entries = []
    for (d, v), c in zip(pairs, comparisons):
        verdict = _chance_reason([("ViT+DRLoc", d), ("the ViT", v)]) or (
            "agrees at this scale: DRLoc ahead" if c.significant and c.difference > 0 else
            "disagrees at this scale: DRLoc behind" if c.significant else "no difference this test can detect")
        settings = d[0]["spec"]
        evidence = (f"{c.words()} (λ = {settings.get('drloc_weight')}, {settings.get('drloc_schedule')} schedule, "
                    f"{settings.get('drloc_pairs')} pairs per image)")
        entries.append(Entry("DRLoc improves a ViT trained on small data", "Liu et al. 2021",
                             DATASETS[dataset].title, verdict, evidence, scale(d),
                             fit_words("ViT+DRLoc", d) + "; " + fit_words("ViT", v), short_scale(d),
                             short_fit([("ViT+DRLoc", d), ("ViT", v)])))
    return entries


def _cifar10_vits(records: Sequence[dict]) -> list[list[dict]]:
    """The CIFAR-10 ViTs (no DRLoc) of the first profile of record that trained one on its own size (the ViT the
    notebooks open), one list of seeds per size (:func:`_pick` among several at a size), smallest first."""
    at = _at_budget(records, "vit")
    for profile in _profiles_of_record(records, "cifar10"):
        vits = [r for r in records if r["spec"]["dataset"] == "cifar10" and r["spec"]["profile"] == profile and
                _is_vit(r) and at(r)]
        sizes: dict[object, list[list[dict]]] = {}
        for g in _groups(vits).values():
            sizes.setdefault(g[0]["spec"].get("train_per_class"), []).append(g)
        if None in sizes:
            return sorted((_pick(gs) for gs in sizes.values()), key=lambda g: g[0]["images_per_class"])
    return []


def _inside(records: Sequence[dict], claim: str, notebook: str, contrast: bool) -> Entry:
    """A claim about what the ViT computes inside (locality, CKA), measured in ``notebook`` on the trained models.

    The measurement is the notebook's, on the ViT of the profile's own size (the one the notebooks open); what the
    records decide is whether that scale could show the claim. That ViT must have fitted its training data (else
    "small data" and "not trained enough" are one); a claim about small against large data needs a ViT trained on
    the whole training set to contrast with; a claim that heads are not local needs a model known to have local
    heads measured beside it, to show what "local" looks like (notebook 02 measures one: the trained ViT with a
    fixed Gaussian bias of the patch distance, :func:`course_lib.locality.with_distance_bias`).
    """
    groups = _cifar10_vits(records)
    opened = [g for g in groups if g[0]["spec"].get("train_per_class") is None]
    if not opened:
        return Entry(claim, "Zhu et al. 2023", "CIFAR-10", "not tested: no ViT record", "—", "—", "—")
    info = DATASETS["cifar10"]
    full = info.sizes["train"] // info.num_classes
    measured, reasons = opened[0], []
    if not _fitted(measured):
        reasons.append(f"the ViT the notebooks open ({measured[0]['images_per_class']:,}/class) under-fitted its "
                       "training data")
    if contrast and max(g[0]["images_per_class"] for g in groups) < full:
        reasons.append(f"no ViT trained on all {full:,} images/class (nor pre-trained) to contrast with")
    verdict = f"{NOT_TESTED}: " + "; ".join(reasons) if reasons else f"tested: read the verdict in {notebook}"
    return Entry(claim, "Zhu et al. 2023", "CIFAR-10", verdict,
                 f"measured in {notebook} on the trained ViT of {measured[0]['images_per_class']:,}/class",
                 scale(measured), "; ".join(fit_words(f"ViT {g[0]['images_per_class']:,}/class", g) for g in groups),
                 short_scale(measured), short_fit([("ViT", measured)]))


def claims_ledger(records: Sequence[dict]) -> list[Entry]:
    """Every claim of the two papers with the course's evidence from ``records`` (e.g.
    ``course_lib.experiments.load_records()``); a claim with no runs to test it says so."""
    if not records:
        raise ValueError("claims_ledger needs run records: pass course_lib.experiments.load_records(), or train the "
                         "runs first (python -m course_lib.experiments).")
    entries: list[Entry] = []
    for dataset in ("cifar10", "cifar100", "svhn"):
        found = _ordering(records, dataset)
        entries += found or [Entry("ViT close to ResNet-18 on SVHN (slower to train)" if dataset == "svhn" else
                                   f"ViT below ResNet-18 on {DATASETS[dataset].title}", "Zhu et al. 2023",
                                   DATASETS[dataset].title, "not tested: no paired runs", "—", "—", "—")]
    entries.append(_inside(records, "The ViT's lower layers do not learn to attend locally", "notebooks 02 and 05",
                           contrast=False))
    entries.append(_inside(records, "The ViT's layer-wise CKA correspondence with ResNet-18 weakens on small data",
                           "notebook 04", contrast=True))
    for dataset in ("cifar10", "cifar100", "svhn"):
        entries += _drloc(records, dataset)
    return entries


COLUMNS = ["claim", "data", "scale", "fitted?", "verdict"]


def _row(e: Entry) -> list[str]:
    return [f"{e.claim} ({e.source})", e.dataset, e.size, e.fitted, e.verdict]


def ledger_table(records: Sequence[dict]) -> Table:
    """The ledger as a :class:`~course_lib.tables.Table` (notebook 06): one row per claim and scale."""
    return Table(COLUMNS, [_row(e) for e in claims_ledger(records)],
                 caption="The papers' claims and the course's evidence, computed from the run records")


def ledger_details(records: Sequence[dict]) -> list[str]:
    """One paragraph per row of the table: the full scale, each run's fit and the comparison behind the verdict."""
    return [f"{i}. {e.claim} ({e.source}), {e.dataset}: {e.verdict}. Scale: {e.scale}. Fit: {e.fit}. "
            f"Evidence: {e.evidence}." for i, e in enumerate(claims_ledger(records), 1)]


def ledger_markdown(records: Sequence[dict]) -> str:
    """The ledger as Markdown: the table, then the numbered details (the book's claims page includes it)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")
    entries = claims_ledger(records)
    lines = ["| # | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    lines += [f"| {i} | " + " | ".join(cell(c) for c in _row(e)) + " |" for i, e in enumerate(entries, 1)]
    lines += ["", "**Details**, row by row:", ""] + ledger_details(records)
    return "\n".join(lines) + "\n"
