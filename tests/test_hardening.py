"""Hardening, second round (issue 12): hostile inputs, resource caps, no silently wrong number.

Each test writes its own fixture and checks the real value or the one clear
line a user sees; docs/robustness.md ("Hostile inputs") lists the same cases.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from cli import cli
from geo._format import csv_safe, md_escape, render
from geo.errors import InputError, strip_controls

# ---------------------------------------------------------------- (a) one escaper per sink

FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "=cmd|' /C calc'!A0", "+1+1", "-1+1", "@SUM(A1:A2)",
            "\t=1+1", "\r=1+1", "  =1+1", " \t@x"]


@pytest.mark.parametrize("value", FORMULAS)
def test_csv_formula_is_neutralised(value: str) -> None:
    out = csv_safe(value)
    expect = "'" + value.replace("\r", "\n")  # a CR in a cell becomes LF, which the writer quotes
    assert out == expect  # the whole value kept, behind the quote spreadsheets treat as text
    # and through the one CSV renderer, read back by Python's csv module
    text = render([{"vehicle_id": value, "km": 1.5}], "csv")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[1] == [expect, "1.5"]


@pytest.mark.parametrize("value", ["-1.5", "+3", "1e5", "V001", "嘉定", "", "a=b", "x-1"])
def test_plain_values_are_left_alone(value: str) -> None:
    assert csv_safe(value) == value
    assert csv_safe(-2.5) == -2.5 and csv_safe(7) == 7 and csv_safe(None) is None


def test_markdown_escapes_html_and_strips_controls() -> None:
    assert md_escape("<script>alert(1)</script>") == "\\<script\\>alert(1)\\</script\\>"
    assert md_escape("a\x1b[31mb\x00c|d") == "abc\\|d"
    assert md_escape("&lt;img&gt;") == "\\&lt;img\\&gt;"


def test_report_markdown_escapes_the_osm_timestamp() -> None:
    from geo.provenance import Provenance
    from geo.report import report_markdown

    prov = Provenance(source_kind="osm-xml", source="x.osm", filter="drive",
                      osm_timestamp="<script>alert(1)</script>", tool_version="0.1<b>")
    md = report_markdown(zone_name="z", place="P", stats=None, comparison=[], provenance=prov)
    line = next(x for x in md.splitlines() if x.startswith("- OSM data timestamp"))
    assert line == "- OSM data timestamp: \\<script\\>alert(1)\\</script\\>"
    assert "<script>" not in md and "<b>" not in md


def test_control_characters_never_reach_a_message() -> None:
    assert strip_controls("x\x1b[2J\x1b]0;pwned\x07y\u202ez\x9b1m") == "xyz"
    e = InputError("server said \x1b[31mboom\x1b[0m\x07", where="http://h/api")
    assert e.message == "http://h/api: server said boom."
