"""The study driver's contract (course_lib.experiments.study.run_study's docstring) and its commits (tools/study.py,
tools/commit_records.py). Each test reproduces a probe of issue 32 and fails without its fix."""
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from course_lib.experiments import RunSpec, of_record, queue, records, runs, study
from course_lib.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[1]
TINY = replace(PROFILES["smoke"], test_images=40)
sys.path.insert(0, str(ROOT / "tools"))
commit_records = importlib.import_module("commit_records")
_spec = importlib.util.spec_from_file_location("study_tool", ROOT / "tools" / "study.py")
study_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study_tool)


class Killed(BaseException):
    """The process is killed here."""


def tiny(seed: int = 0) -> RunSpec:
    return RunSpec("vit", "cifar10", TINY, train_per_class=2, epochs=1, seed=seed)


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git work tree of its own holding the records of record and the checkpoints of record; a work folder; the
    study's queue made of tiny runs on the committed samples."""
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.org")
    git(root, "commit", "-q", "--allow-empty", "-m", "start")
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setattr(records, "RECORDS_OF_RECORD", root / "course_lib" / "records")
    monkeypatch.setattr(of_record, "OF_RECORD_DIR", root / "checkpoints_of_record")
    monkeypatch.setattr(queue, "measure_throughput", lambda *args: 100.0)
    monkeypatch.setattr(study, "_check_study_data", lambda run: None)
    specs = [tiny(0), tiny(1)]
    monkeypatch.setattr(study, "study_queue", lambda: (specs, {specs[0]}))
    return root


def landed(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".git" not in p.parts)


def untracked(root):
    return git(root, "status", "--porcelain", "--untracked-files=all").strip()


# --------------------------------------------------------------------------------------------------------------
# A run is done only when its record of record exists, validates and is committed

def test_a_run_killed_between_its_record_and_its_commit_is_committed_on_the_rerun(repo):
    committer = commit_records.Committer(repo)

    def killed(spec, paths, record):
        raise Killed

    with pytest.raises(Killed):
        study.run_study(only=[tiny(0).key], on_landed=killed)
    assert untracked(repo)                                         # it landed, uncommitted
    commits = git(repo, "rev-list", "--count", "HEAD")
    report = study.run_study(only=[tiny(0).key], on_landed=lambda s, p, r: committer.commit(p, "landed"))
    assert report.outcome[tiny(0).key] == "done before"
    assert untracked(repo) == "" and int(git(repo, "rev-list", "--count", "HEAD")) == int(commits) + 1
    assert "course_lib/records/" + tiny(0).key + ".json" in git(repo, "show", "--name-only", "HEAD")
    assert f"checkpoints_of_record/{tiny(0).key}.fp16.pt" in git(repo, "show", "--name-only", "HEAD")


def test_a_record_in_results_never_stands_in_for_the_record_of_record(repo):
    spec = tiny(1)
    made = runs.train_run(spec, progress=False).record            # the work folder's records/, same identity
    assert (records.records_dir() / f"{spec.key}.json").exists()
    report = study.run_study(only=[spec.key])
    assert report.outcome[spec.key] != "done before"
    written = json.loads((records.RECORDS_OF_RECORD / f"{spec.key}.json").read_text())
    assert written["identity_hash"] == made["identity_hash"]
    assert study.run_study(only=[spec.key]).outcome[spec.key] == "done before"


def test_a_record_with_another_identity_in_results_does_not_retrain_the_record_of_record(repo, capsys):
    spec = tiny(1)
    study.run_study(only=[spec.key])
    other = records.records_dir() / f"{spec.key}.json"
    other.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads((records.RECORDS_OF_RECORD / f"{spec.key}.json").read_text())
    other.write_text(json.dumps({**kept, "identity_hash": "0" * 12}))
    capsys.readouterr()
    assert study.run_study(only=[spec.key]).outcome[spec.key] == "done before"
    assert "training" not in capsys.readouterr().out


def test_a_commit_lands_every_run_with_the_tool(repo, monkeypatch):
    monkeypatch.setattr(commit_records, "ROOT", repo)
    monkeypatch.setattr(study_tool, "Committer", lambda: commit_records.Committer(repo))
    study_tool.main(["run", "--commit", "--deadline-s", "600"])
    assert untracked(repo) == ""
    log = git(repo, "log", "--format=%s")
    assert all(f"Study of record: {s.key}" in log for s in (tiny(0), tiny(1)))
    before = git(repo, "rev-parse", "HEAD")
    study_tool.main(["run", "--commit"])                           # all done and committed: no new commit
    assert git(repo, "rev-parse", "HEAD") == before


# --------------------------------------------------------------------------------------------------------------
# A failed commit says git's reason at once; a detached HEAD is refused

def test_no_git_identity_is_refused_at_once_with_gits_reason(repo, monkeypatch):
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "")
    monkeypatch.setenv("EMAIL", "")
    start = time.monotonic()
    with pytest.raises(commit_records.CommitError, match="no git identity.*git said: .*"):
        commit_records.Committer(repo)
    assert time.monotonic() - start < 5


def test_outside_a_repository_and_on_a_detached_head_are_refused(repo, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(commit_records.CommitError, match="not inside a git work tree. git said: fatal"):
        commit_records.Committer(outside)
    git(repo, "checkout", "-q", "--detach")
    with pytest.raises(commit_records.CommitError, match="detached HEAD"):
        commit_records.Committer(repo)


def test_a_refused_commit_stops_the_driver_at_once_with_gits_reason(repo, capsys):
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'refused by the pre-commit hook' >&2\nexit 1\n")
    hook.chmod(0o755)
    committer = commit_records.Committer(repo)
    start = time.monotonic()
    with pytest.raises(commit_records.CommitError, match="refused by the pre-commit hook"):
        study.run_study(on_landed=lambda s, p, r: committer.commit(p, "landed"))
    assert time.monotonic() - start < 120                      # no 30 x 10 s of retries
    assert tiny(1).key not in capsys.readouterr().out          # stopped at the first run


def test_the_tool_stops_with_one_line_naming_gits_reason(repo, monkeypatch):
    git(repo, "checkout", "-q", "--detach")
    monkeypatch.setattr(study_tool, "Committer", lambda: commit_records.Committer(repo))
    monkeypatch.setattr(queue, "prepare", lambda *a: pytest.fail("nothing may be loaded"))
    with pytest.raises(SystemExit, match=r"\[study\] stopped: .*detached HEAD"):
        study_tool.main(["run", "--commit"])


def test_index_lock_contention_is_waited_for_briefly(repo, monkeypatch):
    committer = commit_records.Committer(repo)
    lock = repo / ".git" / "index.lock"
    lock.write_text("")
    (repo / "a.txt").write_text("a")
    monkeypatch.setattr(commit_records, "LOCK_WAIT_S", 0.2)
    monkeypatch.setattr(commit_records.time, "sleep", lambda s: lock.unlink(missing_ok=True))
    assert committer.commit([repo / "a.txt"], "a") and untracked(repo) == ""


def test_the_course_lib_command_hands_commit_over_to_the_tool(monkeypatch):
    called = []
    monkeypatch.setattr(os, "execv", lambda exe, argv: called.append(argv))
    argv = ["run", "--queue", "tune", "--commit", "--only", study.tuning_queue()[0].key, "--max-run-minutes", "5"]
    study.main(argv)
    assert called and called[0][1].endswith("tools/study.py") and called[0][2:] == argv


def test_course_lib_never_runs_git():
    for path in (ROOT / "course_lib").rglob("*.py"):
        text = path.read_text()
        assert '"commit"' not in text and "'commit'" not in text and '"add", "--"' not in text, path


# --------------------------------------------------------------------------------------------------------------
# Limits finite and positive; an empty selection selects nothing; the deadline loads nothing more

@pytest.mark.parametrize("option", [["--deadline-s", "nan"], ["--deadline-s", "0"], ["--max-run-minutes", "nan"],
                                    ["--max-run-minutes", "-1"], ["--deadline-s", "inf"], ["--only", ""],
                                    ["--only", ","]])
def test_bad_limits_and_empty_selections_are_refused_before_anything_runs(option, monkeypatch, capsys):
    monkeypatch.setattr(queue, "prepare", lambda *a: pytest.fail("nothing may be loaded"))
    with pytest.raises(SystemExit) as stop:
        study.main(["run", *option])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert ("finite number above 0" in err) or ("selects no run" in err)


@pytest.mark.parametrize("kwargs", [{"deadline_s": math.nan}, {"max_run_s": math.nan}, {"only": []},
                                    {"only": [""]}, {"deadline_s": -5}])
def test_run_study_refuses_the_same_as_a_function(kwargs, monkeypatch):
    monkeypatch.setattr(queue, "prepare", lambda *a: pytest.fail("nothing may be loaded"))
    with pytest.raises(ValueError, match="finite number above 0|selects no run"):
        study.run_study(**kwargs)


def test_after_the_deadline_the_remaining_runs_are_not_loaded_nor_measured(repo, monkeypatch):
    prepared = []
    real = queue.prepare
    monkeypatch.setattr(queue, "prepare", lambda *a: prepared.append(a[0].key) or real(*a))
    clock = iter([0.0, 0.0, 0.0] + [1e9] * 20)
    report = queue.work_down(queue.Queue(study.study_queue()[0], of_record.OF_RECORD_DIR,
                                         records=records.RECORDS_OF_RECORD), 600, clock=lambda: next(clock))
    assert prepared == [tiny(0).key]
    assert report.outcome[tiny(1).key] == "not started: the deadline has passed"


def test_the_pilot_refuses_too_few_epochs_before_training(monkeypatch, capsys):
    monkeypatch.setattr(study, "load_data", lambda *a: pytest.fail("nothing may be loaded"))
    with pytest.raises(ValueError, match="at least 3"):
        study.pilot(epochs=2)
    with pytest.raises(SystemExit):
        study.main(["pilot", "--epochs", "2"])
    assert "at least 3" in capsys.readouterr().err


def test_the_pilot_lands_and_is_committed_by_the_tool(repo, monkeypatch):
    def fake_pilot(data_root, epochs):
        record = {"key": "pilot-cifar10-vit-study", "plateau_epoch": 2, "recipe": {"epochs": epochs}}
        path = records.RECORDS_OF_RECORD / "pilot" / f"{record['key']}.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))
        return record

    monkeypatch.setattr(study, "pilot", fake_pilot)
    monkeypatch.setattr(study, "PILOT_DIR", records.RECORDS_OF_RECORD / "pilot")
    monkeypatch.setattr(study_tool, "Committer", lambda: commit_records.Committer(repo))
    study_tool.main(["pilot", "--epochs", "3", "--commit"])
    assert untracked(repo) == ""
    assert git(repo, "log", "-1", "--format=%s").startswith("Study pilot: held-out accuracy plateaus at epoch 2 of 3")


def test_the_tool_commits_the_claims_ledger_with_each_run(repo, monkeypatch):
    """The ledger test fails whenever book/claims_table.md lags the records: a run landed and committed by the
    driver alone must not leave it stale."""
    table = repo / "book" / "claims_table.md"                       # the committer's repository, never this one
    monkeypatch.setattr(study_tool, "ledger_page_text", lambda: "the ledger now\n")
    monkeypatch.setattr(study_tool, "Committer", lambda: commit_records.Committer(repo))
    landed = repo / "record.json"

    def run(args, on_landed):
        landed.write_text("{}")
        on_landed(tiny(0), [landed], {"final_test_acc": 50.0, "test_images": 40})

    monkeypatch.setattr(study_tool.study, "run", run)
    study_tool.main(["run", "--commit"])
    assert table.read_text() == "the ledger now\n"
    assert set(git(repo, "show", "--name-only", "--format=", "HEAD").split()) == {"record.json",
                                                                                   "book/claims_table.md"}
