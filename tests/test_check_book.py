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
    build.mkdir()
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
def test_browser_check_finds_raw_math_and_passes_a_sound_page(tmp_path, capsys):
    bad = _book(tmp_path, r'<div class="math notranslate nohighlight">\(x^2\)</div><img src="ok.png">')
    assert check_book.main([str(bad), "--budget", "1000"]) == 1
    assert "MathJax" in capsys.readouterr().out
    shutil.rmtree(bad)
    good = _book(tmp_path, '<p>plain text</p><img src="ok.png">')
    assert check_book.main([str(good), "--budget", "1000"]) == 0, capsys.readouterr().out
