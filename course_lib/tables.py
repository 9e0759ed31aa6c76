"""Tables for notebooks and the book: :class:`Table` renders as HTML in Jupyter and as aligned text elsewhere."""
from __future__ import annotations

import html
from typing import Sequence

__all__ = ["Table"]


class Table:
    """A small table that renders as HTML in notebooks and the book, and as aligned text elsewhere.

    ``Table(["model", "acc"], [["ViT", 71.2], ...], caption="...")``; floats are shown with ``digits`` decimals,
    ``None`` as an em dash.
    """

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence], caption: str = "", digits: int = 1):
        self.columns, self.rows, self.caption, self.digits = list(columns), [list(r) for r in rows], caption, digits

    def _fmt(self, v) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.{self.digits}f}"
        return str(v)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._fmt(v))}</td>" for v in r) + "</tr>"
                       for r in self.rows)
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f'<table class="table">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def __repr__(self) -> str:
        cells = [self.columns] + [[self._fmt(v) for v in r] for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return ((self.caption + "\n") if self.caption else "") + "\n".join(lines)
