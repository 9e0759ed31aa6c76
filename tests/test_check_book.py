"""tools/check_book.py must catch what a reader would see broken: a checker that cannot fail proves nothing."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_book", ROOT / "tools" / "check_book.py")
check_book = importlib.util.module_from_spec(spec)
sys.modules["check_book"] = check_book          # dataclasses look their module up while the class is created
spec.loader.exec_module(check_book)

# A 1x1 PNG.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4dc0000000049454e44ae426082")


def _page(body: str) -> str:
    return f"<!DOCTYPE html><html><head><title>t</title></head><body>{body}</body></html>"


def _book(tmp_path: Path, body: str) -> Path:
    build = tmp_path / "html"
    build.mkdir(parents=True)
    (build / "ok.png").write_bytes(PNG)
    (build / "index.html").write_text(_page(body))
    return build


def test_static_checks_find_a_missing_image_and_a_broken_link(tmp_path, capsys):
    build = _book(tmp_path, '<img src="missing.png"><a href="nowhere.html">x</a><img src="ok.png">')
    assert check_book.main([str(build), "--no-browser"]) == 1
    out = capsys.readouterr().out
    assert "missing.png" in out and "nowhere.html" in out and "ok.png" not in out


def test_static_checks_pass_a_sound_page(tmp_path, capsys):
    build = _book(tmp_path, '<p>fine</p><img src="ok.png"><a href="index.html#top" id="top">self</a>')
    assert check_book.main([str(build), "--no-browser"]) == 0, capsys.readouterr().out


def test_static_checks_refuse_remote_scripts(tmp_path, capsys):
    build = _book(tmp_path, '<script src="https://cdn.example.org/mathjax.js"></script>')
    assert check_book.main([str(build), "--no-browser"]) == 1
    assert "cdn.example.org" in capsys.readouterr().out


@pytest.mark.skipif(check_book.find_chromium(None) is None, reason="no Chromium (make test installs it)")
@pytest.mark.slow      # headless Chromium
def test_browser_check_finds_raw_math_and_passes_a_sound_page(tmp_path, capsys):
    bad = _book(tmp_path, r'<div class="math notranslate nohighlight">\(x^2\)</div><img src="ok.png">')
    assert check_book.main([str(bad), "--budget", "1000"]) == 1
    assert "MathJax" in capsys.readouterr().out
    shutil.rmtree(bad)
    good = _book(tmp_path, '<p>plain text</p><img src="ok.png">')
    assert check_book.main([str(good), "--budget", "1000"]) == 0, capsys.readouterr().out


# --------------------------------------------------------------------------------------------------------------
# The checks added for readability: each fails on a small crafted page and passes on a sound one.

def _png(width: int, height: int) -> bytes:
    """A grey PNG of the given size (standard library only)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _stderr(text: str) -> str:
    return (f'<div class="output stderr highlight-myst-ansi notranslate"><div class="highlight"><pre><span></span>'
            f'{text}</pre></div></div>')


def test_static_checks_allow_at_most_one_warning_block_per_page(tmp_path, capsys):
    warning = _stderr("/x/data.py:12: OfflineSamplesWarning: CIFAR-10 is not available\n  warnings.warn(")
    bad = _book(tmp_path / "bad", "<p>cell</p>" + warning + _stderr("UserWarning: again"))
    assert check_book.main([str(bad), "--no-browser"]) == 1
    assert "2 warning blocks" in capsys.readouterr().out
    good = _book(tmp_path / "good", warning + _stderr("epoch 1: 10 s") + _stderr("epoch 2: 9 s"))
    assert check_book.main([str(good), "--no-browser"]) == 0, capsys.readouterr().out


def _mathjax_book(tmp_path: Path, body: str) -> Path:
    """A page that loads the book's bundled MathJax and the theme's rules for display math, in a 320-px column."""
    build = _book(tmp_path, "")
    shutil.copytree(ROOT / "book" / "_vendor" / "mathjax", build / "mathjax")
    style = ("<style>div.math{display:flex;max-width:100%;overflow:hidden;flex-direction:row-reverse}"
             "div.math mjx-container{flex-grow:1;overflow:auto}</style>")
    page = (f'<!DOCTYPE html><html><head><title>t</title>{style}<script defer src="mathjax/tex-mml-chtml.js">'
            f'</script></head><body><article style="width:320px">{body}</article></body></html>')
    (build / "index.html").write_text(page)
    return build


LONG = r"\[ a_1 + a_2 + a_3 + a_4 + a_5 + a_6 + a_7 + a_8 + a_9 + a_{10} + a_{11} + a_{12} + a_{13} + a_{14} \]"
SHORT = r"\[ y = \operatorname{ReLU}(x) \]"
BAD_PAGES = {
    "clipped math (theme: scrolls)": (lambda p: _mathjax_book(p, f'<div class="math">{LONG}</div>'),
                                      "display equation"),
    "clipped math (spills over)": (lambda p: _mathjax_book(p, f'<div class="math" style="display:block;'
                                                              f'overflow:visible">{LONG}</div>'), "display equation"),
    "shrunk image": (lambda p: _book(p, '<img src="wide.png" style="width:1000px">'),   # 71 %
                     "too small to read"),
    "placeholder": (lambda p: _book(p, "<p>The results go here (TODO).</p>"), "placeholder text"),
    "lorem ipsum": (lambda p: _book(p, "<p>Lorem ipsum dolor sit amet.</p>"), "placeholder text"),
}


@pytest.mark.skipif(check_book.find_chromium(None) is None, reason="no Chromium (make test installs it)")
@pytest.mark.parametrize("defect", sorted(BAD_PAGES))
@pytest.mark.slow      # headless Chromium
def test_browser_check_fails_a_page_with(defect, tmp_path, capsys):
    make, message = BAD_PAGES[defect]
    build = make(tmp_path)
    (build / "wide.png").write_bytes(_png(1400, 20))
    assert check_book.main([str(build), "--budget", "1500"]) == 1
    out = capsys.readouterr().out
    assert message in out, out


@pytest.mark.skipif(check_book.find_chromium(None) is None, reason="no Chromium (make test installs it)")
@pytest.mark.slow      # headless Chromium
def test_browser_checks_pass_a_readable_page(tmp_path, capsys):
    body = (f'<div class="math">{SHORT}</div>'
            '<img src="wide.png" style="width:1150px"><img src="column.png" style="width:200px">'
            '<img src="wide.png" width="700">'
            '<p>A todo list is a list; nothing here is a stand-in.</p>')
    build = _mathjax_book(tmp_path, body)
    (build / "wide.png").write_bytes(_png(1400, 20))          # shown at 82 %, and as a HiDPI image at 700 px
    (build / "column.png").write_bytes(_png(700, 20))         # narrow enough to shrink freely
    assert check_book.main([str(build), "--budget", "1500"]) == 0, capsys.readouterr().out
