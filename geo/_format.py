"""Render tables of records as text: table, json, csv, markdown.

Shared by every command that prints data (the ``--format`` option). Values are
rendered as given; a ``meta`` mapping (provenance, definitions) goes into the
JSON envelope and under the table in the text and Markdown formats. CSV is
plain (header and rows only, so pandas, GDAL and spreadsheets read the rows
and nothing else): its provenance goes into a ``.provenance.json`` sidecar
(:func:`provenance_sidecar`). Text tables are laid out by display width
(tabulate + wcwidth: a Chinese character takes two columns) to fit a terminal.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import strip_controls

FORMATS = ("table", "json", "csv", "markdown")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        if v.is_integer() and abs(v) < 1e15:
            return f"{v:,.0f}" if abs(v) >= 10000 else f"{v:.0f}"
        return f"{v:,.2f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 0.01 else f"{v:.2f}"
    if isinstance(v, (list, tuple)):
        return ";".join(_cell(x) for x in v)
    return str(v)


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    return str(v)


def render(records: Sequence[Mapping[str, Any]], fmt: str = "table", *,
           columns: Sequence[str] | None = None, meta: Mapping[str, Any] | None = None,
           title: str | None = None, width: int | None = None) -> str:
    """Render ``records`` in ``fmt``; ``meta`` lines follow the table (JSON: ``meta`` key, CSV: none).

    ``width`` bounds the lines of the text table (default: the terminal's, else 120).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    cols = list(columns) if columns else list(dict.fromkeys(k for r in records for k in r))
    if fmt == "json":
        doc: dict[str, Any] = {"rows": [{c: r.get(c) for c in cols} for r in records]}
        if title:
            doc["title"] = title
        if meta:
            doc["meta"] = dict(meta)
        return json.dumps(doc, ensure_ascii=False, indent=2, default=_json_default, allow_nan=False) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([csv_safe(str(c)) for c in cols])
        for r in records:
            w.writerow([_csv_cell(r.get(c)) for c in cols])
        return buf.getvalue()
    rows = [[_cell(r.get(c)) for c in cols] for r in records]
    out: list[str] = []
    if fmt == "markdown":
        if title:
            out.append(f"### {md_escape(title)}\n")
        out.append("| " + " | ".join(md_escape(c) for c in cols) + " |")
        out.append("|" + "|".join("---" for _ in cols) + "|")
        out.extend("| " + " | ".join(md_escape(x) for x in row) + " |" for row in rows)
        if meta:
            out.append("")
            out.extend(f"- {md_escape(k)}: {md_escape(v)}" for k, v in meta.items())
        return "\n".join(out) + "\n"
    if title:
        out.append(title)
    out.append(text_table(records, cols, width=width))
    if meta:
        import textwrap

        out.append("")
        w = width or terminal_width()
        out.extend(textwrap.fill(f"{k}: {v}", w, subsequent_indent="  ", break_on_hyphens=False,
                                 break_long_words=False) for k, v in meta.items())
    return "\n".join(out) + "\n"


def _csv_cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (list, tuple)):
        return csv_safe(";".join(str(x) for x in v))
    return csv_safe(v)


#: Characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\n")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def csv_safe(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula (OWASP CSV-injection advice).

    Strings starting with ``= + - @``, a tab or a carriage return, also after
    leading whitespace (spreadsheets trim it), get a ``'`` prefix; numbers and
    strings that are plain numbers (``-1.5``) stay as they are; a CR inside a cell
    becomes LF (so that the cell is quoted). Every CSV writer
    of ``icv`` passes its string cells through this one function.
    """
    if not isinstance(value, str) or not value:
        return value
    # a bare CR is not quoted by Python's csv writer (line terminator "\n") and splits the row
    # in other readers: line breaks inside a cell become LF, which the writer quotes
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    if value[0] in _FORMULA_START or value.lstrip(" \t\r\n")[:1] in _FORMULA_START[:4]:
        if _PLAIN_NUMBER.match(value.strip()):
            return value
        return "'" + value
    return value


def csv_safe_frame(df: Any) -> Any:
    """A copy of a pandas DataFrame with every text cell passed through :func:`csv_safe`."""
    import numpy as np
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype

    out = df.copy()
    for c in out.columns:
        col = out[c]
        if not (is_numeric_dtype(col) or is_bool_dtype(col) or is_datetime64_any_dtype(col)):
            obj = col.astype(object)
            try:  # each distinct value once (names, classes and ids repeat down a column)
                codes, uniq = pd.factorize(obj, use_na_sentinel=True)
            except TypeError:  # unhashable cells (lists)
                out[c] = obj.map(csv_safe)
                continue
            safe = np.empty(len(uniq) + 1, dtype=object)
            safe[:-1] = [csv_safe(v) for v in uniq]
            vals = safe[codes]  # code -1 (missing): the original cell below
            miss = codes < 0
            if miss.any():
                vals[miss] = obj.to_numpy()[miss]
            out[c] = pd.Series(vals, index=out.index, dtype=object)
    out.columns = [csv_safe(str(c)) for c in out.columns]
    return out


def md_escape(value: Any) -> str:
    """Text for a Markdown cell or line: OSM names and file names are data, never markup or HTML."""
    text = strip_controls("" if value is None else str(value))
    for ch in ("\\", "|", "<", ">", "*", "_", "`", "[", "]", "&"):
        text = text.replace(ch, "\\" + ch)
    return text


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def terminal_width(default: int = 120) -> int:
    """Columns of the terminal (``COLUMNS`` first); ``default`` when output is not a terminal."""
    import shutil

    return max(40, shutil.get_terminal_size((default, 24)).columns)


def _column_format(values: list[Any]) -> str:
    """One number format for a whole column: thousands separators, the same decimals on every row."""
    if all(isinstance(v, int) for v in values if _is_num(v)):
        return "d"  # counts, ids and years as written (no separators: 2024, way 123456789)
    nums = [float(v) for v in values if _is_num(v) and not (isinstance(v, float) and math.isnan(v))]
    if all(v.is_integer() for v in nums):
        return ",.0f"
    big = max(abs(v) for v in nums)
    small = min((abs(v) for v in nums if v), default=1.0)
    most = 2 if small >= 0.01 or big >= 100 else 4
    # as few decimals as the column needs (463, 463.9 -> one), the same on every row
    decimals = next((d for d in range(most) if all(abs(round(v, d) - v) < 1e-9 for v in nums)), most)
    return f",.{decimals}f"


def text_table(records: Sequence[Mapping[str, Any]], columns: Sequence[str], *, width: int | None = None) -> str:
    """A plain-text table laid out by display width (tabulate + wcwidth), lines at most ``width``.

    Numeric columns are right-aligned with one format per column; text columns
    that would push a line past ``width`` are wrapped inside their cells,
    widest first.
    """
    from tabulate import tabulate

    width = width or terminal_width()
    cols = list(columns)
    numeric = [bool(vals) and all(_is_num(v) for v in vals)
               for vals in ([r.get(c) for r in records if r.get(c) is not None and r.get(c) == r.get(c)]
                            for c in cols)]
    fmts = [_column_format([r.get(c) for r in records]) if num else "" for c, num in zip(cols, numeric)]

    def cell(v: Any, f: str) -> str:
        if f and _is_num(v) and not (isinstance(v, float) and math.isnan(v)):
            return format(v, f)
        return _cell(v)

    rows = [[cell(r.get(c), f) for c, f in zip(cols, fmts)] for r in records]
    head = [str(c) for c in cols]
    limits: list[int | None] = [None] * len(cols)
    gap = 2
    from wcwidth import wcswidth

    def dw(s: str) -> int:
        return max((max(wcswidth(line), len(line)) for line in s.split("\n")), default=0)

    natural = [max([dw(h)] + [dw(row[i]) for row in rows]) for i, h in enumerate(head)]
    text_cols = [i for i in range(len(cols)) if not numeric[i]]
    fixed = sum(natural[i] for i in range(len(cols)) if numeric[i]) + gap * (len(cols) - 1)
    if fixed + sum(natural[i] for i in text_cols) > width and text_cols:
        # one cap for every text column ("water filling"): the widest are wrapped, evenly, the narrow kept
        # and no column narrower than its longest word (up to 24): identifiers are not cut
        room = max(width - fixed, 0)
        floor = [max(dw(head[i]), min(24, max((dw(w) for row in rows for w in row[i].split()), default=0)))
                 for i in range(len(cols))]

        def used(cap: int) -> int:
            return sum(min(natural[i], max(cap, floor[i])) for i in text_cols)

        if used(8) > room:  # the words themselves do not fit: cut them rather than run past the width
            floor = [dw(h) for h in head]
        cap = max(natural[i] for i in text_cols)
        while cap > 8 and used(cap) > room:
            cap -= 1
        for i in text_cols:
            if natural[i] > max(cap, floor[i]):
                limits[i] = max(cap, floor[i])
    aligns = ["right" if num else "left" for num in numeric]
    import tabulate as _tabulate

    _tabulate.MIN_PADDING = 0  # headers padded only by the column gap, as the widths above assume
    return tabulate(rows, headers=head, tablefmt="simple", colalign=aligns, disable_numparse=True,
                    maxcolwidths=limits if any(limits) else None)


def provenance_sidecar(path: str | Any) -> Any:
    """Where the provenance of a data file goes: ``roads.csv`` -> ``roads.provenance.json``."""
    from pathlib import Path

    p = Path(path)
    return p.with_name(p.stem + ".provenance.json")
