#!/usr/bin/env python3
"""Write the claims ledger's table into book/claims_table.md from the course's records of record.

Usage:
    python tools/make_ledger.py          # rewrite book/claims_table.md
    python tools/make_ledger.py --check  # exit 1 if the committed table is not what the records give now

The book executes no code, so the table is stored; tests/test_ledger.py fails when it no longer matches the records
in course_lib/records/ (after a new run of record, rerun this script and commit its output).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("COURSE_OFFLINE", "1")

from course_lib.experiments import records  # noqa: E402
from course_lib.ledger import ledger_markdown  # noqa: E402

PAGE = Path("book") / "claims_table.md"      # in the repository
TABLE = ROOT / PAGE
HEADER = ("<!-- Written by tools/make_ledger.py from course_lib/records/: do not edit by hand; rerun the script "
          "after new runs of record. -->\n\n")


def ledger_page_text() -> str:
    """The table as the records of record give it now."""
    return HEADER + ledger_markdown(records.load_records(folders=[records.RECORDS_OF_RECORD]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the committed table")
    args = parser.parse_args(argv)
    text = ledger_page_text()
    if args.check:
        current = TABLE.read_text(encoding="utf-8") if TABLE.exists() else ""
        if current != text:
            print(f"{TABLE.relative_to(ROOT)} is out of date: run python tools/make_ledger.py", file=sys.stderr)
            return 1
        return 0
    TABLE.write_text(text, encoding="utf-8")
    print(f"wrote {TABLE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
