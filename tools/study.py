"""The study driver with its commits: ``python -m course_lib.experiments.study``'s options, and ``--commit`` commits
every run as it lands (and every run found landed but uncommitted, e.g. killed before its commit).

    python tools/study.py run --queue tune --data-root data --commit --only KEY --max-run-minutes 300
    python tools/study.py pilot --data-root data --epochs 40 --commit

Without ``--commit`` it is the course_lib command. With it, the work tree must be able to commit (a branch checked
out, a git identity): that is checked before anything is loaded, and a commit that fails stops the driver at once
with git's reason (the record stays where it landed and is committed by the next run of this command). The claims
ledger (``book/claims_table.md``, :mod:`make_ledger`) is rewritten from the records and committed with each run,
so the book never lags the records it is computed from.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))       # this checkout's course_lib, not an installed one

from commit_records import CommitError, Committer  # noqa: E402 - after the path is set
from course_lib.experiments import study  # noqa: E402
from make_ledger import PAGE, ledger_page_text  # noqa: E402


def message(spec, record: dict) -> str:
    """The commit message of a landed run (``spec`` None: the pilot)."""
    if spec is None:
        return (f"Study pilot: held-out accuracy plateaus at epoch {record['plateau_epoch']} of "
                f"{record['recipe']['epochs']} (python tools/study.py pilot)")
    return (f"Study of record: {spec.key} ({record['final_test_acc']:.2f} % on {record['test_images']:,} test "
            "images; python tools/study.py run)")


def main(argv: list[str] | None = None) -> None:
    args = study.parse(argv)
    on_landed = None
    try:
        if args.commit:
            committer = Committer()

            def on_landed(spec, paths, record):
                if spec is not None:        # the claims ledger follows the records it is computed from
                    table = committer.root / PAGE
                    table.parent.mkdir(parents=True, exist_ok=True)
                    table.write_text(ledger_page_text(), encoding="utf-8")
                    paths = [*paths, table]
                if committer.commit(paths, message(spec, record)):
                    print(f"[study] committed {', '.join(p.name for p in paths)} on {committer.branch}", flush=True)

        study.run(args, on_landed)
    except CommitError as error:
        raise SystemExit(f"[study] stopped: {error}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
