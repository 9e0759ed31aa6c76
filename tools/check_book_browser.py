"""The browser checks of tools/check_book.py: each page opened in headless Chromium with a probe script
(check_book_probe.js) that reports math, images, fonts, widgets and placeholder text once the page's scripts ran.
Standard library only."""
from __future__ import annotations

import argparse
import concurrent.futures as futures
import fnmatch
import html
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from check_book_static import Page, is_remote

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio"]
PROBE_ID = "__check_book_result__"
SHRINK_MIN_NATURAL = 700        # px: images at most this wide are never shrunk in the 700-px text column
SHRINK_MIN_RATIO = 0.8          # shown width / natural width below which 10-pt text is under 8 pt (see above)
PROBE_JS = (Path(__file__).resolve().parent / "check_book_probe.js").read_text(encoding="utf-8")


def find_chromium(explicit: str | None) -> str | None:
    for name in ([explicit] if explicit else []) + [os.environ.get("CHROMIUM", "")] + list(CHROMIUM_NAMES):
        if name and (found := shutil.which(name)):
            return found
    return None


def make_probe_copy(page: Page, tmp: Path, fallback_ms: int) -> Path:
    """A copy of the page with <base> pointing at its folder and the probe script before </body>."""
    text = page.path.read_text(encoding="utf-8", errors="replace")
    base = f'<base href="{page.path.parent.as_uri()}/">'
    text, n = re.subn(r"(<head[^>]*>)", lambda m: m.group(1) + base, text, count=1, flags=re.I)
    if not n:
        text = base + text
    js = (PROBE_JS.replace("__ID__", PROBE_ID).replace("__FALLBACK__", str(fallback_ms))
          .replace("__SHRINK_NATURAL__", str(SHRINK_MIN_NATURAL)).replace("__SHRINK_RATIO__", str(SHRINK_MIN_RATIO)))
    probe = "<script>" + js + "</script>"
    idx = text.lower().rfind("</body>")
    text = text[:idx] + probe + text[idx:] if idx >= 0 else text + probe
    copy = tmp / (page.rel.replace("/", "__"))
    copy.write_text(text, encoding="utf-8")
    return copy


def remote_requests(netlog: Path) -> list[str]:
    """http(s) requests the page made (Chromium's own background requests carry initiator 'not an origin')."""
    urls = []
    if not netlog.exists():
        return urls
    for line in netlog.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip().rstrip(",")
        if '"initiator"' not in line or '"url"' not in line:
            continue
        try:
            params = json.loads(line).get("params", {})
        except json.JSONDecodeError:
            m_url = re.search(r'"url":"([^"]+)"', line)
            m_init = re.search(r'"initiator":"([^"]*)"', line)
            params = {"url": m_url.group(1) if m_url else "", "initiator": m_init.group(1) if m_init else ""}
        url, initiator = params.get("url", ""), params.get("initiator", "")
        if is_remote(url) and initiator not in ("", "not an origin"):
            urls.append(url)
    return list(dict.fromkeys(urls))


# Uncaught JavaScript errors that are known and harmless. sphinx-thebe 0.3.1 adds its configuration script twice
# (it declares `const THEBE_JS_URL` in both), which only matters for the Thebe "live code" button, not enabled here.
KNOWN_JS_ERRORS = [re.compile(r"Identifier 'THEBE_JS_URL' has already been declared")]


def js_errors(stderr: str) -> list[str]:
    """Uncaught exceptions and syntax errors from Chromium's console log, minus the known harmless ones."""
    found = []
    for m in re.finditer(r'INFO:CONSOLE[^\]]*\] "(Uncaught[^"]*)", source: (\S+) \((\d+)\)', stderr):
        message, source, line = m.groups()
        if any(p.search(message) for p in KNOWN_JS_ERRORS):
            continue
        found.append(f"{message} ({source.rsplit('/', 1)[-1]}:{line})")
    return list(dict.fromkeys(found))


def run_chromium(chromium: str, page: Page, tmp: Path, shot: Path | None, args) -> tuple[dict | None, list[str], str]:
    """Open the page's probe copy; return (probe result or None, remote requests, error text)."""
    probe_copy = make_probe_copy(page, tmp, max(1000, args.budget - 500))
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp))
    netlog = profile / "netlog.json"
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={args.budget}",
           f"--window-size={args.window_size}", f"--log-net-log={netlog}", "--enable-logging=stderr", "--v=0",
           "--dump-dom"]
    if shot is not None:
        cmd.append(f"--screenshot={shot}")
    cmd.append(probe_copy.as_uri())
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)     # the browser and its helpers, all started by us
        proc.communicate()
        return None, [], f"Chromium did not finish within {args.timeout} s"
    dom = out.decode("utf-8", errors="replace")
    m = re.search(rf'<pre id="{PROBE_ID}"[^>]*>(.*?)</pre>', dom, re.S)
    if not m:
        tail = err.decode("utf-8", errors="replace").strip().splitlines()[-3:]
        return None, remote_requests(netlog), ("the page's scripts did not finish (no probe result); Chromium said: "
                                               + " | ".join(tail))
    result = json.loads(html.unescape(m.group(1)))
    result["jsErrors"] = js_errors(err.decode("utf-8", errors="replace"))
    remote = remote_requests(netlog)
    shutil.rmtree(profile, ignore_errors=True)
    return result, remote, ""


def browser_problems(page: Page, result: dict | None, remote: list[str], error: str,
                     args_window: str = "") -> list[str]:
    out = []
    if error:
        out.append(error)
    for url in remote:
        out.append(f"the page requested {url} from the web")
    if result is None:
        return out
    if page.math and not result["mathjaxLoaded"]:
        out.append(f"MathJax did not load: {len(result['untypeset'])} math element(s) show raw TeX, e.g. "
                   f"{(result['untypeset'] or ['?'])[0]!r}")
    elif result["untypeset"]:
        out.append(f"{len(result['untypeset'])} math element(s) not typeset by MathJax, e.g. "
                   f"{result['untypeset'][0]!r} "
                   "(MathJax gives up on the whole page when one formula needs a TeX extension that is not bundled, "
                   "see book/_vendor/VENDORED.txt)")
    elif page.math and result["mjx"] == 0:
        out.append("the page has math but MathJax produced no mjx-container element")
    for t in result.get("wideMath", []):
        out.append(f"display equation wider than the text column at {args_window}, cut off: {t!r}")
    for e in result["mathErrors"]:
        out.append(f"MathJax error: {e}")
    raw = [t for t in result["rawMath"] if not result["untypeset"]]   # already reported above otherwise
    for t in raw[:5]:
        out.append(f"raw TeX left in the text: {t!r}")
    for img in result["images"]:
        if not img["ok"]:
            out.append(f"image did not load: {img['src']}")
    for img in result.get("smallImages", []):
        out.append(f"image {img['src']} is {img['natural']} px wide but shown at {img['shown']} px "
                   f"({img['shown'] / img['natural']:.0%} < {SHRINK_MIN_RATIO:.0%}): its text is too small to read "
                   "(draw the figure narrower, at most 7 inches at 100 dpi, or split it)")
    for t in result.get("placeholders", []):
        out.append(f"placeholder text in the page: {t!r}")
    for f in sorted(set(result["fontErrors"])):
        out.append(f"font failed to load: {f}")
    if result["widgetsMissing"]:
        out.append(f"{result['widgetsMissing']} of {result['widgetViews']} ipywidgets view(s) did not render "
                   "(widget JavaScript missing, or the notebook was saved without widget state)")
    for e in result.get("jsErrors", []):
        out.append(f"JavaScript error: {e}")
    for e in result["widgetErrors"]:
        out.append(f"widget error: {e}")
    if result["faPlaceholders"]:
        out.append(f"{result['faPlaceholders']} Font Awesome icon placeholder(s) were not replaced (icons missing)")
    return out



def browser_checks(chromium: str, pages: dict[str, Page], problems: dict[str, list[str]], args) -> list[str]:
    """Open every page (or those matching ``--pages``) in Chromium, add what it found to ``problems``; return the
    pages that were checked a second time."""
    rechecked: list[str] = []
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    browser_pages = [rel for rel, p in pages.items() if not p.refresh   # redirects have nothing to show
                     and (not args.pages or any(fnmatch.fnmatch(rel, g) for g in args.pages))]
    with tempfile.TemporaryDirectory(prefix="check_book-") as tmp_name:
        tmp = Path(tmp_name)

        def job(rel: str) -> tuple[str, list[str]]:
            shot = None
            if args.screenshots:
                shot = (args.screenshots / (rel[:-5].replace("/", "-") + ".png")).resolve()
                shot.unlink(missing_ok=True)
            width = f"width {args.window_size.split(',')[0]} px"
            result, remote, error = run_chromium(chromium, pages[rel], tmp, shot, args)
            found = browser_problems(pages[rel], result, remote, error, width)
            if found:
                # On a loaded machine a page's scripts (Font Awesome, MathJax) can outlast the virtual-time
                # budget. Check once more with twice the time: a real defect shows up again, a slow load not.
                slow = argparse.Namespace(**{**vars(args), "budget": 2 * args.budget})
                result, remote, error = run_chromium(chromium, pages[rel], tmp, shot, slow)
                found = browser_problems(pages[rel], result, remote, error, width)
                rechecked.append(rel)
            if shot is not None and not shot.exists():
                found.append("no screenshot was written")
            return rel, found

        with futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for rel, found in pool.map(job, browser_pages):
                problems[rel].extend(found)
    return rechecked
