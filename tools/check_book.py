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
browser. Standard library only.
"""
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
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio"]
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", ".doctrees", "_panels_static"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
PROBE_ID = "__check_book_result__"
MAX_WARNING_BLOCKS = 1          # stderr outputs that mention a warning, per page
SHRINK_MIN_NATURAL = 700        # px: images at most this wide are never shrunk in the 700-px text column
SHRINK_MIN_RATIO = 0.8          # shown width / natural width below which 10-pt text is under 8 pt (see above)

# The probe runs in the page after it loaded: it waits for MathJax and the images, then writes what it found into a
# hidden <pre>, which --dump-dom returns.
PROBE_JS = r"""
(function () {
  var done = false;
  function inSkipped(node) {
    for (var n = node.parentNode; n && n.nodeType === 1; n = n.parentNode) {
      var t = n.tagName.toLowerCase();
      if (t === 'script' || t === 'style' || t === 'pre' || t === 'code' || t === 'textarea' ||
          t === 'mjx-container' || t === 'noscript' || t === 'template') return true;
      if (n.classList && n.classList.contains('highlight')) return true;   // code and text outputs
    }
    return false;
  }
  // A display equation is clipped when its typeset box or any glyph sticks out of the visible part of its
  // container, the text column or the window, or when the container scrolls sideways.
  function clipped(e) {
    var c = e.tagName.toLowerCase() === 'mjx-container' ? e : e.querySelector('mjx-container');
    var math = c && c.querySelector('mjx-math');
    if (!math) return false;
    var box = c.getBoundingClientRect();
    var left = box.left + c.clientLeft, right = left + (c.clientWidth || box.width);
    var outer = [e.getBoundingClientRect(), (e.closest('article, main, [role="main"]') || document.body)
      .getBoundingClientRect()];
    outer.forEach(function (o) { left = Math.max(left, o.left); right = Math.min(right, o.right); });
    right = Math.min(right, document.documentElement.clientWidth);
    if (c.scrollWidth > c.clientWidth + 2 && getComputedStyle(c).overflowX !== 'visible') return true;
    var parts = [math].concat(Array.prototype.slice.call(math.querySelectorAll('mjx-c')));
    return parts.some(function (p) {
      var b = p.getBoundingClientRect();
      return b.width > 0 && (b.right > right + 1 || b.left < left - 1);
    });
  }
  function collect() {
    var r = {};
    r.images = Array.prototype.map.call(document.images, function (i) {
      return {src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0};
    });
    r.mathElements = document.querySelectorAll('.math').length;
    r.mjx = document.querySelectorAll('mjx-container').length;
    r.untypeset = Array.prototype.filter.call(document.querySelectorAll('.math'), function (e) {
      return !e.querySelector('mjx-container') && !e.closest('mjx-container');
    }).map(function (e) { return e.textContent.trim().slice(0, 80); });
    r.mathErrors = Array.prototype.map.call(document.querySelectorAll('mjx-merror, [data-mjx-error]'),
      function (e) { return (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120); });
    var raw = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, null);
    var rawPattern = /\\\(|\\\[|\$\$|\$[^$\n]*\\[a-zA-Z]+[^$\n]*\$/;
    for (var n = walker.nextNode(); n; n = walker.nextNode()) {
      if (rawPattern.test(n.nodeValue) && !inSkipped(n)) raw.push(n.nodeValue.trim().slice(0, 80));
    }
    r.rawMath = raw;
    var views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
    r.widgetViews = views.length;
    r.widgetsMissing = Array.prototype.filter.call(views, function (s) {
      return !s.parentElement.querySelector('.jupyter-widgets');
    }).length;
    r.widgetErrors = (document.body.innerText.match(/Error displaying widget[^\n]*/g) || []).slice(0, 5);
    r.fontErrors = [];
    if (document.fonts) document.fonts.forEach(function (f) {
      if (f.status === 'error') r.fontErrors.push(f.family);
    });
    // Font Awesome's script replaces each <i class="fa-..."> by an <svg>; an <i> left without one is a missing icon.
    r.faPlaceholders = Array.prototype.filter.call(document.querySelectorAll(
      'i.fa, i.fas, i.far, i.fab, i.fa-solid, i.fa-regular, i.fa-brands'), function (e) {
      return !e.querySelector('svg');
    }).length;
    r.mathjaxLoaded = !!(window.MathJax && window.MathJax.startup);
    r.wideMath = Array.prototype.filter.call(document.querySelectorAll('div.math, mjx-container[display="true"]'),
      function (e) { return (e.tagName.toLowerCase() === 'div' || !e.closest('div.math')) && clipped(e); })
      .map(function (e) { return e.textContent.replace(/\s+/g, ' ').trim().slice(0, 60); });
    function meantWidth(i) {   // a width attribute in pixels says how wide a HiDPI image is meant to be shown
      var w = (i.getAttribute('width') || '').trim();
      return /^\d+(\.\d+)?(px)?$/.test(w) ? parseFloat(w) : i.naturalWidth;
    }
    r.smallImages = Array.prototype.filter.call(document.images, function (i) {
      var shown = i.getBoundingClientRect().width, meant = meantWidth(i);
      return meant > __SHRINK_NATURAL__ && shown > 0 && shown < __SHRINK_RATIO__ * meant;
    }).map(function (i) {
      return {src: i.getAttribute('src'), natural: meantWidth(i), shown: Math.round(i.getBoundingClientRect().width)};
    });
    var text = document.body.innerText, found = [];
    var words = /\b(TODO|FIXME|XXX|TBD)\b|lorem ipsum|placeholder/gi, m;
    while ((m = words.exec(text)) !== null && found.length < 5) {
      var w = m[0];
      if (/^(todo|fixme|xxx|tbd)$/i.test(w) && w !== w.toUpperCase()) continue;   // "todo" in prose is a word
      found.push(text.slice(Math.max(0, m.index - 30), m.index + w.length + 30).replace(/\s+/g, ' ').trim());
    }
    r.placeholders = found;
    return r;
  }
  function pending(r) {   // things that may still be happening asynchronously
    return r.untypeset.length || r.widgetsMissing || r.faPlaceholders ||
      r.images.some(function (i) { return !i.ok; });
  }
  function write(r) {
    if (done) return; done = true;
    var pre = document.createElement('pre');
    pre.id = '__ID__'; pre.style.display = 'none'; pre.textContent = JSON.stringify(r);
    document.body.appendChild(pre);
  }
  function attempt(n) {   // re-check a few times before reporting, so slow scripts are not reported as failures
    if (done) return;
    var r = collect();
    if (pending(r) && n < 10) setTimeout(function () { attempt(n + 1); }, 300);
    else write(r);
  }
  function waitImages() {
    var pending = Array.prototype.filter.call(document.images, function (i) {
      if (i.loading === 'lazy') i.loading = 'eager';
      return !i.complete;
    });
    return Promise.all(pending.map(function (i) {
      return new Promise(function (ok) { i.addEventListener('load', ok); i.addEventListener('error', ok); });
    }));
  }
  window.addEventListener('load', function () {
    var waits = [waitImages()];
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) waits.push(MathJax.startup.promise);
    if (document.fonts && document.fonts.ready) waits.push(document.fonts.ready);
    var go = function () { setTimeout(function () { attempt(0); }, 500); };
    Promise.all(waits).then(go, go);
  });
  setTimeout(function () { write(collect()); }, __FALLBACK__);
})();
"""


# --------------------------------------------------------------------------------------------------------------
# Static HTML checks

@dataclass
class Page:
    path: Path                       # absolute path of the HTML file
    rel: str                         # path relative to the build folder, with /
    ids: set[str] = field(default_factory=set)
    refs: list[tuple[str, str, str]] = field(default_factory=list)   # (tag, attribute, url)
    math: int = 0                    # elements with class "math"
    tracebacks: int = 0              # traceback outputs in cells not tagged raises-exception
    stderr_outputs: int = 0
    warning_blocks: list[str] = field(default_factory=list)   # first line of each stderr output with a warning
    widget_views: int = 0
    refresh: str | None = None       # target of a <meta http-equiv="refresh">


class PageParser(HTMLParser):
    """Collects ids, URLs, math elements and notebook outputs of one page."""

    URL_ATTRS = {("a", "href"), ("link", "href"), ("script", "src"), ("img", "src"), ("iframe", "src"),
                 ("source", "src"), ("video", "src"), ("video", "poster"), ("audio", "src"), ("embed", "src"),
                 ("object", "data"), ("image", "href"), ("use", "href"), ("area", "href")}

    def __init__(self, page: Page):
        super().__init__(convert_charrefs=True)
        self.page = page
        self.stack: list[tuple[str, bool]] = []     # (tag, inside a cell tagged raises-exception)
        self.stderr_depth: int | None = None        # stack depth of the stderr output being read
        self.stderr_text: list[str] = []

    def handle_data(self, data):
        if self.stderr_depth is not None:
            self.stderr_text.append(data)

    def _end_stderr(self) -> None:
        text = "".join(self.stderr_text)
        if re.search(r"warning", text, re.I):
            self.page.warning_blocks.append(" ".join(text.split())[:90])
        self.stderr_depth, self.stderr_text = None, []

    def _raises(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        classes = a.get("class", "").split()
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.page.ids.add(a[key])
        for (t, attr) in self.URL_ATTRS:
            if t == tag and a.get(attr):
                self.page.refs.append((tag, attr, a[attr]))
        if tag == "use" and a.get("xlink:href"):
            self.page.refs.append((tag, "xlink:href", a["xlink:href"]))
        for attr in ("srcset",):
            if a.get(attr):
                for part in a[attr].split(","):
                    if part.strip():
                        self.page.refs.append((tag, attr, part.strip().split()[0]))
        if tag == "link" and a.get("rel", "").lower() in ("stylesheet", "preload", "icon", "shortcut icon",
                                                           "modulepreload", "prefetch", "preconnect"):
            self.page.refs.append(("link-resource", "href", a.get("href", "")))
        if tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            m = re.search(r"url\s*=\s*['\"]?([^'\"]+)", a.get("content", ""), re.I)
            if m:
                self.page.refresh = m.group(1).strip()
        if "math" in classes:
            self.page.math += 1
        if tag == "script" and a.get("type") == "application/vnd.jupyter.widget-view+json":
            self.page.widget_views += 1
        raises = self._raises() or "tag_raises-exception" in classes
        if "traceback" in classes and "output" in classes and not raises:
            self.page.tracebacks += 1
        if "stderr" in classes and "output" in classes:
            self.page.stderr_outputs += 1
            if self.stderr_depth is None and tag not in VOID:
                self.stderr_depth = len(self.stack)
        if tag not in VOID:
            self.stack.append((tag, raises))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        for i in range(len(self.stack) - 1, -1, -1):      # tolerate unclosed elements
            if self.stack[i][0] == tag:
                del self.stack[i:]
                if self.stderr_depth is not None and len(self.stack) <= self.stderr_depth:
                    self._end_stderr()
                return


def parse_page(path: Path, root: Path) -> Page:
    page = Page(path, path.relative_to(root).as_posix())
    PageParser(page).feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def is_remote(url: str) -> bool:
    return bool(re.match(r"^(https?:)?//", url, re.I))


def image_signature_ok(path: Path) -> bool:
    head = path.read_bytes()[:512]
    return (head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff") or head[:6] in (b"GIF87a", b"GIF89a")
            or (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or b"<svg" in head.lower()
            or head.lstrip().startswith(b"<?xml"))


CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)|@import\s+['"]([^'"]+)['"]""")


def check_css(css: Path, root: Path, seen: dict[Path, list[str]]) -> list[str]:
    """Remote or missing url(...)/@import references in a local style sheet (recursively through @import)."""
    if css in seen:
        return seen[css]
    seen[css] = problems = []
    text = css.read_text(encoding="utf-8", errors="replace")
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    for m in CSS_URL.finditer(text):
        url = (m.group(1) or m.group(2)).strip()
        if url.startswith(("data:", "#", "about:")) or url.startswith("%23"):
            continue
        if is_remote(url):
            problems.append(f"{css.relative_to(root)} loads {url} from the web")
            continue
        target = (css.parent / unquote(urlsplit(url).path)).resolve()
        if not target.exists():
            problems.append(f"{css.relative_to(root)} refers to missing {url}")
        elif target.suffix == ".css":
            problems.extend(check_css(target, root, seen))
    return problems


def page_problems(page: Page) -> list[str]:
    """What is wrong with the page itself: a broken redirect, too many warning blocks, tracebacks."""
    out = []
    if page.refresh:
        target = (page.path.parent / unquote(urlsplit(page.refresh).path)).resolve()
        if not target.exists():
            out.append(f"redirects to missing {page.refresh}")
    if len(page.warning_blocks) > MAX_WARNING_BLOCKS:
        out.append(f"{len(page.warning_blocks)} warning blocks (stderr outputs mentioning a warning; at most "
                   f"{MAX_WARNING_BLOCKS} per page): " + "; ".join(repr(w) for w in page.warning_blocks[:4]))
    if page.tracebacks:
        out.append(f"{page.tracebacks} notebook output(s) show a traceback (tag the cell 'raises-exception' if "
                   "the error is meant to be shown)")
    return out


def static_checks(pages: dict[str, Page], root: Path) -> dict[str, list[str]]:
    """Problems per page (page rel path -> messages)."""
    problems: dict[str, list[str]] = {rel: [] for rel in pages}
    css_seen: dict[Path, list[str]] = {}
    for rel, page in pages.items():
        out = problems[rel]
        for tag, attr, url in page.refs:
            url = html.unescape(url).strip()
            if not url or url.startswith(("mailto:", "javascript:", "data:", "tel:", "about:")):
                continue
            loads = tag in ("script", "img", "iframe", "source", "video", "audio", "embed", "object", "image",
                            "link-resource") or (tag == "use")
            if is_remote(url) or re.match(r"^[a-z][a-z0-9+.-]*:", url, re.I) and not url.lower().startswith("file:"):
                if loads and is_remote(url):
                    out.append(f"<{tag if tag != 'link-resource' else 'link'} {attr}> loads {url} from the web")
                continue
            parts = urlsplit(url)
            if parts.path:
                target = (page.path.parent / unquote(parts.path)).resolve()
            else:
                target = page.path
            try:
                target.relative_to(root)
            except ValueError:
                out.append(f"{url} points outside the build folder")
                continue
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                out.append(f"broken {tag} {attr}: {url} (no file {target.relative_to(root)})")
                continue
            if tag in ("img", "image") or (tag == "source" and attr in ("src", "srcset")):
                if target.stat().st_size == 0:
                    out.append(f"image {url} is an empty file")
                elif not image_signature_ok(target):
                    out.append(f"image {url} is not a PNG/JPEG/GIF/WebP/SVG file")
            if tag == "link-resource" and target.suffix == ".css":
                out.extend(check_css(target, root, css_seen))
            frag = unquote(parts.fragment)
            if frag and tag == "a" and target.suffix == ".html" and frag != "top":
                target_rel = target.relative_to(root).as_posix()
                target_page = pages.get(target_rel) or parse_page(target, root)
                if frag not in target_page.ids:
                    out.append(f"broken anchor: {url} (no id {frag!r} in {target_rel})")
        out.extend(page_problems(page))
        # keep each message once, in order
        problems[rel] = list(dict.fromkeys(out))
    return problems


def toc_files(toc: Path) -> list[str]:
    """The files named by a jb-book _toc.yml (root and every file:), without extensions. No YAML library needed."""
    names = []
    for line in toc.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0]
        m = re.match(r"^\s*(?:-\s*)?(root|file)\s*:\s*['\"]?([^'\"\s]+)", line)
        if m:
            names.append(re.sub(r"\.(md|ipynb|rst)$", "", m.group(2)))
    return names


# --------------------------------------------------------------------------------------------------------------
# Chromium

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
        out.append(f"{len(result['untypeset'])} math element(s) not typeset by MathJax, e.g. {result['untypeset'][0]!r} "
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


# --------------------------------------------------------------------------------------------------------------

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


def toc_problems(toc: Path, pages: dict[str, Page]) -> tuple[list[str], list[str]]:
    """(toc entries without a page, pages not in the toc) for a jb-book _toc.yml."""
    names = toc_files(toc)
    missing = [f"_toc.yml entry {name} has no page {name}.html" for name in names if f"{name}.html" not in pages]
    expected = {f"{n}.html" for n in names} | {"index.html", "search.html", "genindex.html"}
    return missing, sorted(set(pages) - expected)


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
