"""The static checks of tools/check_book.py: the HTML files of the build as written (links, images, remote
resources, tracebacks, warning blocks, the table of contents). Standard library only."""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", ".doctrees", "_panels_static"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
MAX_WARNING_BLOCKS = 1          # stderr outputs that mention a warning, per page


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
    return (head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff")
            or head[:6] in (b"GIF87a", b"GIF89a")
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



def toc_problems(toc: Path, pages: dict[str, Page]) -> tuple[list[str], list[str]]:
    """(toc entries without a page, pages not in the toc) for a jb-book _toc.yml."""
    names = toc_files(toc)
    missing = [f"_toc.yml entry {name} has no page {name}.html" for name in names if f"{name}.html" not in pages]
    expected = {f"{n}.html" for n in names} | {"index.html", "search.html", "genindex.html"}
    return missing, sorted(set(pages) - expected)
