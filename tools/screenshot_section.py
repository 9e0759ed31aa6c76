"""A screenshot of one section of the built book, as a reader sees it in a 1280-px window.

    python tools/screenshot_section.py _build/html/notebooks/02_attention_rollout.html rollout-by-hand out.png

Headless Chromium renders a scrolled page blank, so the page is rendered whole in a window tall enough to reach the
section (its offset is read from the DOM first) and the screenshot is cropped to the section's top and ``--height``
pixels below it. Needs Chromium (see tools/check_book.py) and Pillow (a matplotlib dependency).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from check_book_browser import CHROMIUM_FLAGS, find_chromium

OFFSET_ID = "__section_offset__"


def _chromium(chromium: str, page: Path, width: int, height: int, *extra: str) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:    # removed afterwards, unlike mkdtemp
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
               f"--window-size={width},{height}", *extra, page.as_uri()]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


def screenshot_section(page: Path, anchor: str, out: Path, width: int = 1280, height: int = 1100) -> int:
    """Write the section ``anchor`` of ``page`` to ``out``; returns the section's offset from the top in px."""
    chromium = find_chromium(None)
    if chromium is None:
        raise SystemExit("No Chromium found: install it (Debian: apt-get install chromium) or set CHROMIUM.")
    probe = (f"<script>window.addEventListener('load', () => setTimeout(() => {{"
             f"const e = document.getElementById({anchor!r}); const p = document.createElement('pre');"
             f"p.id = '{OFFSET_ID}'; p.textContent = e ? Math.round(e.getBoundingClientRect().top + scrollY) : -1;"
             f"document.body.appendChild(p); }}, 1000));</script></body>")
    copy = page.with_name(f"_screenshot_{page.name}")
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", probe, 1), encoding="utf-8")
    try:
        dom = _chromium(chromium, copy, width, 1000, "--dump-dom")
        found = re.search(rf'<pre id="{OFFSET_ID}">(-?\d+)</pre>', dom)
        if not found or int(found.group(1)) < 0:
            raise SystemExit(f"No section with id {anchor!r} in {page}.")
        top = int(found.group(1))
        with tempfile.TemporaryDirectory() as tmp:
            whole = Path(tmp) / "page.png"
            _chromium(chromium, copy, width, top + height + 20, f"--screenshot={whole}")
            with Image.open(whole) as image:
                image.crop((0, max(0, top - 20), width, min(image.height, top + height))).save(out, optimize=True)
    finally:
        copy.unlink(missing_ok=True)
    return top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="a built page, e.g. _build/html/notebooks/04_cka.html")
    parser.add_argument("anchor", help="the section's id (the heading's anchor), e.g. cka-by-hand")
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1100, help="pixels from the section's top (default 1100)")
    args = parser.parse_args()
    top = screenshot_section(args.page.resolve(), args.anchor, args.out, args.width, args.height)
    print(f"{args.out}: section {args.anchor!r} of {args.page} at {args.width} px (it starts {top} px down)")


if __name__ == "__main__":
    main()
