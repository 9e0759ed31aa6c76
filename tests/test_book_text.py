"""What the book's pages say against what the notebooks and the library hold: the Exercises page's table, stored
notebooks that a learner can edit and rerun, exercises not answered on their own page, and published numbers
credited only to a source that was read."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from course_lib import exercises, papers

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {p.stem[:2]: p for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}


def _cells(number: str, kind: str) -> list[str]:
    nb = nbformat.read(NOTEBOOKS[number], as_version=4)
    return [c.source for c in nb.cells if c.cell_type == kind]


def _exercise_table() -> list[tuple[str, str, list[str]]]:
    """(notebook number, the function the learner writes, the checks) per row of book/exercises.md's table."""
    rows = []
    for line in (ROOT / "book" / "exercises.md").read_text(encoding="utf-8").splitlines():
        if m := re.match(r"\| \{doc\}`(\d) <\.\./notebooks/[^`]+>` \| `(\w+)\(", line):
            checks = re.findall(r"`(check_\w+)`", line)
            rows.append((f"0{m.group(1)}", m.group(2), checks))
    return rows


def _exercise_cells(number: str) -> list[str]:
    """The notebook's exercise cells: the ones that import a check, except the worked solutions."""
    return [s for s in _cells(number, "code") if "course_lib.exercises import" in s and "# Solution" not in s]


def test_the_exercises_page_lists_what_each_notebook_asks_for():
    rows = _exercise_table()
    assert rows, "no rows found in book/exercises.md's table"
    for number, function, checks in rows:
        cells = "\n".join(_exercise_cells(number))
        assert re.search(rf"^def {function}\(", cells, re.M), f"notebook {number} asks for no `{function}`"
        for check in checks:
            assert f"{check}({function})" in cells, f"notebook {number} does not call {check}({function})"
            assert callable(getattr(exercises, check, None)), f"course_lib.exercises has no {check}"
    listed = {(n, c) for n, _, checks in rows for c in checks}
    for number in ("01", "02", "03", "04", "05"):
        for cell in _exercise_cells(number):
            for check in re.findall(r"^(check_\w+)\(", cell, re.M):
                assert (number, check) in listed, f"notebook {number}'s {check} is missing from the Exercises page"


def test_the_background_chapters_name_only_exercises_that_exist():
    asked = {f for _, f, _ in _exercise_table()}
    for page in ("vit", "resnet", "rollout", "cka", "drloc", "exercises", "intro"):
        text = (ROOT / "book" / f"{page}.md").read_text(encoding="utf-8")
        for stale in ("rollout_step", "rollout_max", "my_linear_cka", "my_hsic_unbiased", "check_drloc_targets"):
            assert stale not in text, f"book/{page}.md still names the old exercise {stale}"
    assert {"unpatchify", "rollout_discard", "my_rbf_cka", "signed_targets", "expected_target"} <= asked


@pytest.mark.parametrize("number", ["01", "02", "05"])
def test_an_exercise_is_not_answered_on_its_own_page(number):
    code = "\n".join(s for s in _cells(number, "code") if "# Solution" not in s)
    text = "\n".join(_cells(number, "markdown")) + code
    if number == "05":      # the exact mean target is the exercise's answer
        assert not re.search(r"k\s*[²^]\s*2?\s*[−-]\s*1\)\s*/\s*\(?3", text), "notebook 05 states the answer"
    elif number == "02":    # the by-hand cell fuses, adds the identity and multiplies; discarding is the exercise
        assert "def rollout_discard(" in code
        assert not re.search(r"\.(topk|argsort|sort|kthvalue)\(|torch\.(topk|argsort|sort|kthvalue)\(", code), \
            "a code cell of notebook 02 ranks attention entries: the discard step is the exercise's answer"
        assert not re.search(r"\.(amax|max)\(dim=1\)", code)      # nor the old exercise, max fusion, by hand
    else:                   # the by-hand cell cuts the patches; the exercise must ask for something else
        assert "def patchify(" not in text and "def unpatchify(" in text


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_no_injected_parameters_cell_is_stored(number):
    nb = nbformat.read(NOTEBOOKS[number], as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert not injected, (f"{NOTEBOOKS[number].name} is stored with papermill's injected parameters "
                          f"({injected[0].source.strip()!r}), which override the parameters cell a learner edits")


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_the_install_cell_is_collapsed_in_the_book_but_kept(number):
    nb = nbformat.read(NOTEBOOKS[number], as_version=4)
    install = next(c for c in nb.cells if c.cell_type == "code")
    assert "google.colab" in install.source
    assert {"hide-input", "remove-input"} & set(install.metadata.get("tags", []))
    assert "remove-cell" not in install.metadata.get("tags", [])      # it must still run on Colab


def _published():
    for value in papers.ZHU2023["reference"].values():
        yield value
    for table in papers.KENTAROY47["cifar10"].values():
        yield table


def test_no_number_is_credited_to_a_paper_it_was_not_read_in():
    for number in _published():
        assert not re.search(r"second-hand|not checked|\bper\b", number.source), number.source
        assert "@" in number.source, f"{number.source}: name the commit or version the number was read at"
    assert papers.ZHU2023["paper_table"] is None          # Zhu et al.'s own cells were never read
    texts = [(ROOT / "book" / p).read_text(encoding="utf-8") for p in ("resnet.md", "intro.md", "claims.md")]
    texts += ["\n".join(_cells(n, "markdown")) for n in NOTEBOOKS]
    assert not any("81.36" in t for t in texts), "81.36 % was never read in Zhu et al.'s paper"


def test_the_kentaroy47_numbers_are_the_ones_its_table_gives():
    # README.md of kentaroy47/vision-transformers-cifar10 at commit 03690f3: 'ViT patch=4 Epoch@200 | 80%',
    # 'ViT patch=4 Epoch@500 | 88%', 'resnet18 | 93%', 'resnet18+randaug | 95%'.
    table = papers.KENTAROY47["cifar10"]
    assert [table[k].value for k in ("vit_patch4_200ep", "vit_patch4_500ep", "resnet18", "resnet18_randaug")] == \
        [80.0, 88.0, 93.0, 95.0]
    assert papers.reference_number("vit", "cifar10").value == table["vit_patch4_500ep"].value


def test_the_runner_drops_papermills_injected_cell_before_storing(tmp_path):
    from course_lib.experiments.notebooks import clean_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("datasets = ['cifar10', 'svhn']", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("datasets = ['cifar10']", metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("print(datasets)")]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    clean_notebook(path)
    kept = nbformat.read(path, as_version=4).cells
    assert [c.source for c in kept] == ["datasets = ['cifar10', 'svhn']", "print(datasets)"]


def _stored_text(number: str) -> str:
    nb = nbformat.read(NOTEBOOKS[number], as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") if "text" in out else str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_stored_outputs_credit_no_unread_number_and_name_each_tables_real_profile(number):
    text = _stored_text(number)
    assert "81.36" not in text and "second-hand" not in text
    # A CIFAR-100 or SVHN results table under a profile that covers CIFAR-10 alone shows its fallback's runs.
    from course_lib.profiles import PROFILES

    for m in re.finditer(r"^(CIFAR-100|SVHN), profile '([\w-]+)'", text, re.M):
        shown = PROFILES[m.group(2)]
        assert shown.covers is None or m.group(1).lower().replace("-", "") in shown.covers, m.group(0)
