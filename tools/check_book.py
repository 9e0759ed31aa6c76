#!/usr/bin/env python3
"""Check the built book as a reader would see it, in headless Chromium.

Usage:
    python tools/check_book.py _build/html --screenshots artifacts/screenshots

For every HTML page of the build:

* static checks (the HTML files as written):
  - every local link, script, style sheet and image resolves to an existing file inside the build, and every
    ``#anchor`` exists in its target page;
  - local images are non-empty files with a known image signature (PNG, JPEG, GIF, WebP, SVG);
  - nothing needed for rendering comes from the web: no remote ``<script src>``, ``<link href>`` (style sheets,
    fonts, preloads), ``<img>``, ``<iframe>``, ``<source>``, and no remote ``url(...)``/``@import`` in local CSS.
    Ordinary ``<a href>`` links to the web (launch buttons, repository, papers) are fine;
  - no notebook cell shows a traceback unless it is tagged ``raises-exception``;
  - at most one warning block per page (``MAX_WARNING_BLOCKS``): a stderr output whose text contains "warning"
    (any case). One notice, e.g. that the offline samples are used, is information; a page of warnings hides it;
  - every entry of ``_toc.yml`` has a page.
* in Chromium (the page opened from a temporary copy whose ``<base>`` points at the build, plus a small probe
  script; the page's own files are not modified), after the scripts ran:
  - MathJax typeset every math element (``mjx-container`` inside every ``.math``), no MathJax errors, no raw
    ``\\(``, ``\\[`` or ``$$`` left in the visible text;
  - no clipped display equation: the typeset formula (``mjx-math``) and every glyph in it lie inside the visible
    box of its container, the text column and the window, and the container does not scroll sideways (the theme
    sets ``overflow: auto``/``hidden``, so a formula that is too wide is cut off or needs scrolling);
  - every ``<img>`` loaded (``naturalWidth > 0``);
  - no image shrunk below legibility: an image wider than ``SHRINK_MIN_NATURAL`` (700 px, the text column) may not
    be shown at less than ``SHRINK_MIN_RATIO`` (80 %) of its width. Notebook figures are drawn at 100 dpi, where
    text must be at least 8 pt on the page to be read (the rule ``course_lib.plots`` follows). Matplotlib writes
    tick and axis labels at 10 pt by default, which stays at 8 pt or more only down to 80 %; a figure shrunk
    further has unreadable text unless every text in it is larger than 10 pt, which figures rarely do. (At 55 %,
    even 14.5-pt text would be lost.) The width is the image's own pixel width, or its ``width`` attribute when
    it has one in pixels (Jupyter's "retina" PNGs are stored at twice the size they are meant to be shown at);
  - no placeholder text in the visible page: TODO, FIXME, XXX, TBD (as words, in capitals), "lorem ipsum",
    "placeholder" (any case);
  - every font the page asked for loaded (MathJax fonts, icon fonts);
  - every ipywidgets view rendered;
  - icons: no unreplaced Font Awesome ``<i>`` placeholders;
  - no uncaught JavaScript error (one known, harmless sphinx-thebe error excepted, see ``KNOWN_JS_ERRORS``);
  - the network log shows no request to a remote host made by the page.
  A PNG screenshot of each page goes to ``--screenshots``.

Pages that are not in ``_toc.yml`` (other than the index, search and genindex pages) are listed as a note: with
``only_build_toc_files`` they are left over from an earlier build (``jupyter-book build`` never deletes pages).

Exit status: 0 all checks passed, 1 some check failed (the report says which page and what), 2 usage error or no
browser. Standard library only. This file is the command line; the checks live beside it, in ``check_book_static.py``
(the HTML files) and ``check_book_browser.py`` (Chromium), which adds ``check_book_probe.js`` to each page.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))     # its two halves and the probe live beside it

from check_book_browser import (SHRINK_MIN_NATURAL, SHRINK_MIN_RATIO, browser_checks,  # noqa: E402
                                find_chromium)
from check_book_static import (MAX_WARNING_BLOCKS, SKIP_DIRS, Page, parse_page, static_checks,  # noqa: E402
                               toc_problems)

__all__ = ["main", "find_chromium", "MAX_WARNING_BLOCKS", "SHRINK_MIN_NATURAL", "SHRINK_MIN_RATIO"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", type=Path, help="the built HTML folder, e.g. _build/html")
    parser.add_argument("--screenshots", type=Path, help="folder for one PNG screenshot per page")
    parser.add_argument("--toc", type=Path, help="_toc.yml whose entries must all have pages "
                        "(default: ../../_toc.yml from the build folder, if it exists)")
    parser.add_argument("--chromium", help="browser executable (default: $CHROMIUM, chromium, google-chrome, ...)")
    parser.add_argument("--no-browser", action="store_true", help="only the static checks")
    parser.add_argument("--jobs", type=int, default=2, help="browsers run in parallel (default 2)")
    parser.add_argument("--budget", type=int, default=5000, help="virtual time per page in ms (default 5000)")
    parser.add_argument("--timeout", type=int, default=60, help="wall-clock limit per page in s (default 60)")
    parser.add_argument("--window-size", default="1280,1000", help="screenshot size W,H (default 1280,1000)")
    parser.add_argument("--pages", nargs="+", metavar="GLOB",
                        help="open only these pages in the browser, e.g. 'notebooks/*' (static checks cover all)")
    return parser



def report(args, pages: dict[str, Page], problems: dict[str, list[str]], chromium: str | None,
           rechecked: list[str], toc_missing: list[str], stale: list[str], elapsed: float) -> int:
    """Print what was checked and every problem; return the exit status."""
    failed = {rel: msgs for rel, msgs in problems.items() if msgs}
    n_math = sum(1 for p in pages.values() if p.math)
    n_widgets = sum(p.widget_views for p in pages.values())
    n_stderr = sum(p.stderr_outputs for p in pages.values())
    print(f"check_book: {len(pages)} pages in {args.build} ({n_math} with math, {n_widgets} widget views, "
          f"{n_stderr} stderr outputs), {'static checks only' if chromium is None else 'checked in ' + chromium}"
          f", {elapsed:.0f} s")
    if args.screenshots and chromium:
        print(f"  screenshots: {args.screenshots}/")
    if chromium and rechecked:
        print(f"  rechecked with twice the time after a first failure: {', '.join(sorted(rechecked))}")
    if stale:
        print(f"  note: {len(stale)} page(s) not in _toc.yml, probably left over from an earlier build (delete "
              f"{args.build} and rebuild): {', '.join(stale)}")
    for msg in toc_missing:
        print(f"FAIL {msg}")
    for rel, msgs in sorted(failed.items()):
        print(f"FAIL {rel}")
        for msg in msgs:
            print(f"     - {msg}")
    if failed or toc_missing:
        print(f"check_book: {len(failed) + len(toc_missing)} problem page(s)/entries; see above.")
        return 1
    print("check_book: all pages OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = args.build.resolve()
    if not (root / "index.html").exists() and not any(root.glob("**/*.html")):
        print(f"check_book: no built book in {args.build} (run `make book` first).", file=sys.stderr)
        return 2
    start = time.perf_counter()
    files = sorted(p for p in root.rglob("*.html")
                   if not (set(p.relative_to(root).parts[:-1]) & SKIP_DIRS))
    pages = {p.relative_to(root).as_posix(): parse_page(p, root) for p in files}
    problems = static_checks(pages, root)

    toc = args.toc or (root.parent.parent / "_toc.yml")
    toc_missing, stale = [], []
    if toc.exists():
        toc_missing, stale = toc_problems(toc, pages)
    elif args.toc:
        print(f"check_book: {toc} does not exist.", file=sys.stderr)
        return 2

    chromium, rechecked = None, []
    if not args.no_browser:
        chromium = find_chromium(args.chromium)
        if chromium is None:
            print("check_book: no Chromium found. Install it (Debian/Ubuntu: apt-get install -y chromium), "
                  "point --chromium or $CHROMIUM at a Chrome/Chromium binary, or pass --no-browser.",
                  file=sys.stderr)
            return 2
        rechecked = browser_checks(chromium, pages, problems, args)
    return report(args, pages, problems, chromium, rechecked, toc_missing, stale, time.perf_counter() - start)


if __name__ == "__main__":
    sys.exit(main())
