"""Reconcile: which definition of "road km" or "streets" reproduces a reported figure.

A reported "1,117 km of test roads" rarely says what it counts. :func:`definition_space`
computes, from the clipped road pieces of a zone (:attr:`geo.stats.RoadStats.pieces`),
every value of a small, documented space of definitions, and :func:`closest`
ranks them by their distance to the reported value.

The space (:data:`CLASS_ORDER`)
-------------------------------
Lengths (km), ``2 x 7 x 2 x 2`` = 56 definitions, twice that with a test-road set:

- basis: ``centerline km`` (a dual carriageway once) or ``carriageway km`` (each
  carriageway);
- class cut-off: motorway, then down to trunk, primary, secondary, tertiary,
  unclassified, residential (``motorway–tertiary`` = motorway, trunk, primary,
  secondary and tertiary);
- with or without the link roads of those classes (``*_link``);
- all roads or named roads only (``name`` or ``name:zh``);
- every loaded road, or the test-road set only (when one is given).

Counts (``streets``, ``batch_roads``): distinct street names over the same class
cut-offs, with and without links, and the test-road set when given: 14 (28).

Classes outside the cut-offs (living_street, service, ...) are in no definition.
Definitions are tried in the order above; among equal distances the earlier one
(the simpler: centerline before carriageway, fewer classes, links first, all
roads before named only) ranks first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: Class cut-offs, from the top of the hierarchy down.
CLASS_ORDER = ("motorway", "trunk", "primary", "secondary", "tertiary", "unclassified", "residential")
#: Classes that have ``*_link`` roads.
LINKED = ("motorway", "trunk", "primary", "secondary", "tertiary")
#: Reported figures reconciled as lengths / as counts of distinct names.
LENGTH_FIGURES = ("test_road_km", "batch_road_km", "expressway_km")
COUNT_FIGURES = ("streets", "batch_roads")
_TESTED = ("agrees", "contradicts", "consistent lower bound", "exceeds")


@dataclass(frozen=True)
class Definition:
    """One definition of the space and its value on a network.

    Attributes
    ----------
    label
        Its name, e.g. ``centerline km, motorway–tertiary with links``.
    value
        Its value: km for lengths, a count for names.
    unit
        ``km`` or ``count``.
    """

    label: str
    value: float
    unit: str


def _classes_label(k: int, links: bool) -> str:
    span = CLASS_ORDER[0] if k == 0 else f"{CLASS_ORDER[0]}–{CLASS_ORDER[k]}"
    return f"{span} {'with' if links else 'no'} links"


def definition_space(pieces: pd.DataFrame, *, test_mask: np.ndarray | None = None) -> list[Definition]:
    """Every definition of the documented space and its value.

    Parameters
    ----------
    pieces
        Clipped road pieces with ``highway``, ``names`` (tuple of names),
        ``clipped_m`` and ``centerline_m`` (as :attr:`geo.stats.RoadStats.pieces`).
    test_mask
        True for the pieces of the test-road set (aligned with ``pieces``), or None.

    Returns
    -------
    list of Definition
        Lengths first, then counts, each in the documented order.
    """
    hw = pieces["highway"].astype(str).to_numpy()
    names = list(pieces["names"])
    named = np.fromiter((bool(n) for n in names), dtype=bool, count=len(names))
    km = pieces["clipped_m"].to_numpy(dtype=float) / 1000.0
    ckm = pieces["centerline_m"].to_numpy(dtype=float) / 1000.0
    sets: list[tuple[str, np.ndarray]] = [("", np.ones(len(hw), dtype=bool))]
    if test_mask is not None:
        sets.append((", test-road set", np.asarray(test_mask, dtype=bool)))
    lengths: list[Definition] = []
    cnts: list[Definition] = []
    for set_label, in_set in sets:
        for basis, values in (("centerline km", ckm), ("carriageway km", km)):
            for k in range(len(CLASS_ORDER)):
                for links in (True, False):
                    sel = in_set & _class_mask(hw, k, links)
                    for only_named in (False, True):
                        s = sel & named if only_named else sel
                        label = f"{basis}, {_classes_label(k, links)}" + (", named roads only" if only_named else "")
                        lengths.append(Definition(label + set_label, float(values[s].sum()), "km"))
        for k in range(len(CLASS_ORDER)):
            for links in (True, False):
                sel = np.flatnonzero(in_set & _class_mask(hw, k, links))
                distinct = {n for i in sel for n in names[i]}
                cnts.append(Definition(f"distinct street names, {_classes_label(k, links)}{set_label}",
                                       float(len(distinct)), "count"))
    return lengths + cnts


def _class_mask(hw: np.ndarray, k: int, links: bool) -> np.ndarray:
    classes = list(CLASS_ORDER[:k + 1])
    if links:
        classes += [f"{c}_link" for c in CLASS_ORDER[:k + 1] if c in LINKED]
    return np.isin(hw, classes)


def closest(space: Sequence[Definition], reported: float, unit: str, *, within_pct: float = 5.0,
            nearest: int = 3) -> tuple[list[dict[str, Any]], int]:
    """The definitions closest to ``reported``.

    Parameters
    ----------
    space
        From :func:`definition_space`.
    reported
        The reported value (in ``unit``).
    unit
        ``km`` (lengths) or ``count`` (names); only definitions of this unit are tried.
    within_pct
        Every definition within this many percent is returned, closest first ...
    nearest
        ... and when none is, the ``nearest`` closest.

    Returns
    -------
    (list of dict, int)
        ``{definition, value, delta_pct}`` records (``delta_pct`` = 100 *
        (value - reported) / reported), and how many definitions were tried.
    """
    tried = [d for d in space if d.unit == unit]
    if not tried or not reported:
        return [], len(tried)
    scored = sorted(((abs(d.value - reported) / reported * 100.0, i, d) for i, d in enumerate(tried)),
                    key=lambda t: (t[0], t[1]))
    hits = [t for t in scored if t[0] <= within_pct] or scored[:nearest]
    return [{"definition": d.label, "value": round(d.value, 3),
             "delta_pct": round(100.0 * (d.value - reported) / reported, 2)} for _, _, d in hits], len(tried)


def reconcile_rows(rows: Sequence[Mapping[str, Any]], pieces: pd.DataFrame | None, *,
                   test_mask: np.ndarray | None = None, within_pct: Mapping[str, float] | float | None = None,
                   nearest: int = 3) -> list[dict[str, Any]]:
    """Add ``closest_definitions`` and ``definitions_tried`` to reconcilable rows.

    Rows of :data:`LENGTH_FIGURES` and :data:`COUNT_FIGURES` with a reported value
    that a computed value was set against (verdict ``agrees``, ``contradicts``,
    ``consistent lower bound`` or ``exceeds``; not ``not visible``) get the
    closest definitions (:func:`closest`); the rest get an empty list and
    ``definitions_tried`` 0. ``within_pct``: percent by unit (``{"km": 5, "count": 5}``)
    or one number for both; 5 % by default.
    """
    if within_pct is None or isinstance(within_pct, (int, float)):
        pct = {"km": 5.0 if within_pct is None else float(within_pct), "count": 5.0 if within_pct is None
               else float(within_pct)}
    else:
        pct = {"km": float(within_pct.get("km", 5.0)), "count": float(within_pct.get("count", 5.0))}
    space = definition_space(pieces, test_mask=test_mask) if pieces is not None else []
    out = []
    for row in rows:
        r = dict(row)
        fig, rep = r.get("figure"), r.get("reported")
        unit = "km" if fig in LENGTH_FIGURES else "count" if fig in COUNT_FIGURES else None
        if unit and rep and space and r.get("verdict") in _TESTED and r.get("unit") == unit:
            r["closest_definitions"], r["definitions_tried"] = closest(space, float(rep), unit,
                                                                        within_pct=pct[unit], nearest=nearest)
            r["definitions_within_pct"] = pct[unit]
        else:
            r["closest_definitions"], r["definitions_tried"] = [], 0
        out.append(r)
    return out


def closest_text(row: Mapping[str, Any], limit: int = 3) -> str:
    """``label = value (+d %)`` of a row's closest definitions, ``; ``-joined (for tables and CSV)."""
    defs = row.get("closest_definitions") or []
    return "; ".join(f"{d['definition']} = {d['value']:,.2f} ({d['delta_pct']:+.1f} %)" for d in defs[:limit])
