"""Author-year labels in the bibliography, to match the author-year citations in the text.

sphinxcontrib-bibtex's ``author_year`` reference style writes citations as "Dosovitskiy et al. [2021]", but the
bibliography page keeps pybtex's numeric labels [1], [2], ... This extension registers a pybtex formatting style,
``plain_author_year``: pybtex's ``plain`` (entries sorted by author, year, title) with labels such as
"Dosovitskiy et al., 2021" or "Abnar and Zuidema, 2020". Select it with ``bibtex_default_style`` in _config.yml.
"""
from __future__ import annotations

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _last_names(entry) -> list[str]:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = []
    for person in people:
        last = " ".join(person.prelast_names + person.last_names)
        names.append(last.replace("{", "").replace("}", "") or str(person))
    return names


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        labels = []
        for entry in sorted_entries:
            names = _last_names(entry)
            if not names:
                who = entry.fields.get("key", entry.key)
            elif len(names) == 1:
                who = names[0]
            elif len(names) == 2:
                who = f"{names[0]} and {names[1]}"
            else:
                who = f"{names[0]} et al."
            labels.append(f"{who}, {entry.fields.get('year', 'n.d.')}")
        # The same author(s) twice in one year: 2021a, 2021b.
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        seen: dict[str, int] = {}
        for label in labels:
            if counts[label] > 1:
                seen[label] = seen.get(label, 0) + 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            else:
                yield label


class PlainAuthorYearStyle(PlainStyle):
    default_label_style = "author_year_labels"


def setup(app):
    register_plugin("pybtex.style.labels", "author_year_labels", AuthorYearLabelStyle)
    register_plugin("pybtex.style.formatting", "plain_author_year", PlainAuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
