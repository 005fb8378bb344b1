"""Render tables of records as text: table, json, csv, markdown.

Shared by every command that prints data (the ``--format`` option). Values are
rendered as given; a ``meta`` mapping (provenance, definitions) goes into the
JSON envelope and under the table in the other formats.
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
           title: str | None = None) -> str:
    """Render ``records`` in ``fmt``; ``meta`` lines follow the table (JSON: ``meta`` key)."""
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
        if meta:
            for k, v in meta.items():
                w.writerow([csv_safe(f"# {k}: {v}")])
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
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(cols)]
    numeric = [all(_is_num(r.get(c)) for r in records if r.get(c) is not None) for c in cols]
    fmt_row = lambda row: "  ".join(  # noqa: E731
        (x.rjust(w) if num else x.ljust(w)) for x, w, num in zip(row, widths, numeric)).rstrip()
    if title:
        out.append(title)
    out.append(fmt_row(cols))
    out.append("  ".join("-" * w for w in widths))
    out.extend(fmt_row(row) for row in rows)
    if meta:
        out.append("")
        out.extend(f"{k}: {v}" for k, v in meta.items())
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
    from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype

    out = df.copy()
    for c in out.columns:
        col = out[c]
        if not (is_numeric_dtype(col) or is_bool_dtype(col) or is_datetime64_any_dtype(col)):
            out[c] = col.astype(object).map(csv_safe)
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
