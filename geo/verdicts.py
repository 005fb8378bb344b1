"""Verdicts: what each comparison row says about a reported figure.

:func:`assign_verdicts` is a pure function on comparison rows (records with
``figure``, ``reported``, ``computed``, ``unit``, ``definition``, ``qualifier``)
and the network's reach (the share of the zone within 500 m of a loaded road).
It adds to each row:

``verdict``
    One of :data:`VERDICTS`:

    - ``agrees``: computed within the figure's tolerance of reported (2 % for
      areas, 5 % for lengths, counts and other figures; :class:`Tolerances`).
      For "more than N" (``at_least``) anything from N minus the tolerance up.
    - ``contradicts``: outside the tolerance, on a network that covers the
      zone (reach at or above ``Tolerances.complete_reach``, 95 %), or for a
      figure that does not depend on the network (the zone outline's area,
      fleet figures).
    - ``consistent lower bound``: the network covers part of the zone only
      (or its reach is unknown), so a network figure is a lower bound, and it
      lies below reported.
    - ``exceeds``: a network figure that is a lower bound and already lies above
      reported by more than the tolerance.
    - ``not visible``: the network holds nothing of this figure (computed 0: no
      motorway piece, no piece with the ref) while it covers part of the zone
      only: the figure may lie outside the extract. ``computed`` becomes None
      and ``computed_reason`` says why; never 0 and -100 %.
    - ``not comparable``: units that measure different things, a target, a
      computed figure with no reported one, a figure computed from a SYNTHETIC
      fleet log, or the outline's area beside a coverage claim.
    - ``reported only``: nothing computed for it (fleet data needed, not
      derivable from roads, or no network loaded).

``verdict_rule``
    The rule applied to this row, in words, with its tolerance and the reach.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .reported import figure_spec

AGREES = "agrees"
CONTRADICTS = "contradicts"
LOWER_BOUND = "consistent lower bound"
EXCEEDS = "exceeds"
NOT_VISIBLE = "not visible"
NOT_COMPARABLE = "not comparable"
REPORTED_ONLY = "reported only"

#: Every verdict, in the order a reader takes them in.
VERDICTS = (AGREES, CONTRADICTS, LOWER_BOUND, EXCEEDS, NOT_VISIBLE, NOT_COMPARABLE, REPORTED_ONLY)

#: One colour per verdict (report.md chart and table markers); colour-blind safe (Okabe-Ito).
VERDICT_COLOURS = {
    AGREES: "#009E73", CONTRADICTS: "#D55E00", LOWER_BOUND: "#0072B2", EXCEEDS: "#E69F00",
    NOT_VISIBLE: "#999999", NOT_COMPARABLE: "#CC79A7", REPORTED_ONLY: "#DDDDDD",
}

#: Definition labels of computed values that do not depend on the road network.
NETWORK_FREE_LABELS = ("zone_area_km2",)

_AREA_UNITS = ("km2", "m2", "ha")
_LENGTH_UNITS = ("km", "m")


@dataclass(frozen=True)
class Tolerances:
    """How close is "agrees", and when a network counts as the whole zone.

    Attributes
    ----------
    area_pct
        Tolerance for areas (km², m², ha), percent of reported.
    length_pct
        Tolerance for lengths (km, m), percent of reported.
    count_pct
        Tolerance for counts and every other unit (h, %), percent of reported.
    complete_reach
        Network reach (share 0-1 of the zone within 500 m of a loaded road) at or
        above which the network is taken as the whole zone's; below it network
        figures are lower bounds.
    """

    area_pct: float = 2.0
    length_pct: float = 5.0
    count_pct: float = 5.0
    complete_reach: float = 0.95

    def __post_init__(self) -> None:
        for name in ("area_pct", "length_pct", "count_pct"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a non-negative percentage, not {v!r}")
        if not 0 < self.complete_reach <= 1:
            raise ValueError(f"complete_reach must be in (0, 1], not {self.complete_reach!r}")

    def pct_for(self, unit: str | None) -> float:
        """The tolerance (percent) for a figure in ``unit``."""
        if unit in _AREA_UNITS:
            return self.area_pct
        if unit in _LENGTH_UNITS:
            return self.length_pct
        return self.count_pct

    def kind_for(self, unit: str | None) -> str:
        """``areas``, ``lengths`` or ``counts and other figures``."""
        if unit in _AREA_UNITS:
            return "areas"
        if unit in _LENGTH_UNITS:
            return "lengths"
        return "counts and other figures"


def label_of(definition: str | None) -> str:
    """The short label of a definition (``centerline_km: road length ...`` -> ``centerline_km``)."""
    if not definition:
        return ""
    return definition.partition(":")[0].strip()


def depends_on_network(row: Mapping[str, Any]) -> bool:
    """True when the row's computed value comes from the road network (so a partial network bounds it)."""
    try:
        kind = figure_spec(str(row.get("figure"))).kind
    except KeyError:
        return False
    return kind == "network" and label_of(row.get("definition")) not in NETWORK_FREE_LABELS


def is_partial(reach: float | None, tolerances: Tolerances = Tolerances()) -> bool:
    """True when a network of this reach covers part of the zone only (unknown reach counts as partial)."""
    return reach is None or reach < tolerances.complete_reach


def _reach_text(reach: float | None, tol: Tolerances) -> str:
    if reach is None:
        return "network reach unknown: network figures are taken as lower bounds"
    state = "covers the zone" if reach >= tol.complete_reach else "covers part of the zone only"
    return (f"the network reaches {100 * reach:.1f} % of the zone (within 500 m of a loaded road), "
            f"{state} (whole zone from {100 * tol.complete_reach:g} %)")


def rule_text(row: Mapping[str, Any], reach: float | None, tolerances: Tolerances = Tolerances()) -> str:
    """The verdict rule that applies to ``row``, in words."""
    tol = tolerances
    unit = row.get("unit")
    pct = tol.pct_for(unit)
    if row.get("figure") == "area_km2" and label_of(row.get("definition")) in NETWORK_FREE_LABELS:
        return "the outline's area stands beside a coverage claim as context: not comparable"
    if row.get("verdict") == REPORTED_ONLY:
        return "reported only: nothing computed stands beside it"
    if row.get("verdict") == NOT_COMPARABLE:
        return f"not comparable: {row.get('computed_reason') or 'no like-for-like computed value'}"
    head = f"agrees within ±{pct:g} % ({tol.kind_for(unit)})"
    if row.get("qualifier") == "at_least":
        head = f"'more than' figure: agrees from {pct:g} % below reported up ({tol.kind_for(unit)})"
    if depends_on_network(row) and is_partial(reach, tol):
        return (f"{head}; {_reach_text(reach, tol)}: below → consistent lower bound, above by more than "
                f"{pct:g} % → exceeds, nothing of it in the network → not visible")
    if depends_on_network(row):
        return f"{head}, else contradicts; {_reach_text(reach, tol)}"
    return f"{head}, else contradicts (does not depend on the road network)"


def verdict_of(row: Mapping[str, Any], reach: float | None,
               tolerances: Tolerances = Tolerances()) -> tuple[str, str | None]:
    """The verdict of one row and, for ``not visible``, the reason computed is left out.

    Returns
    -------
    (verdict, reason)
        ``reason`` is None except for ``not visible`` and ``not comparable``.
    """
    tol = tolerances
    reported, computed = row.get("reported"), row.get("computed")
    if reported is None:
        return NOT_COMPARABLE, "computed only: no reported figure"
    if row.get("qualifier") == "target":
        return NOT_COMPARABLE, "a target, not an achieved figure"
    if row.get("figure") == "area_km2" and label_of(row.get("definition")) in NETWORK_FREE_LABELS:
        share = f" (the claim is {100 * reported / computed:.1f} % of it)" if computed else ""
        return NOT_COMPARABLE, (f"the outline's area{share}: how large the zone is, not how much of it test "
                                "roads cover; the covered-area row tests the claim")
    if "SYNTHETIC" in str(row.get("definition") or ""):
        return NOT_COMPARABLE, "computed from a SYNTHETIC fleet log: a demonstration, not evidence for or against"
    if computed is None:
        if "unit mismatch" in str(row.get("note") or ""):
            return NOT_COMPARABLE, "the units measure different things"
        return REPORTED_ONLY, None
    network = depends_on_network(row)
    partial = network and is_partial(reach, tol)
    if partial and computed == 0 and reported > 0:
        where = ("the network's reach is unknown" if reach is None else
                 f"the network reaches {100 * reach:.1f} % of the zone")
        return NOT_VISIBLE, (f"nothing of {row.get('figure')} in the loaded network, and {where}: "
                             "it may lie outside the extract")
    pct = tol.pct_for(row.get("unit"))
    lo, hi = reported * (1 - pct / 100), reported * (1 + pct / 100)
    if row.get("qualifier") == "at_least":
        hi = math.inf
    if lo <= computed <= hi:
        return AGREES, None
    if partial:
        return (LOWER_BOUND, None) if computed < lo else (EXCEEDS, None)
    return CONTRADICTS, None


def assign_verdicts(rows: Iterable[Mapping[str, Any]], *, reach: float | None,
                    tolerances: Tolerances = Tolerances()) -> list[dict[str, Any]]:
    """Add ``verdict`` and ``verdict_rule`` to comparison rows (new dicts; the input is not changed).

    Parameters
    ----------
    rows
        Rows of :func:`geo.reported.compare` (``figure``, ``reported``,
        ``computed``, ``unit``, ``definition``, ``qualifier``, ``note``...).
    reach
        Share (0-1) of the zone within 500 m of a loaded road, or None when
        unknown (network figures are then taken as lower bounds).
    tolerances
        Tolerances and the reach of a whole-zone network.

    Returns
    -------
    list of dict
        The rows with ``verdict`` and ``verdict_rule``; a ``not visible`` row has
        ``computed``, ``delta`` and ``delta_pct`` None and ``computed_reason``
        saying why (also added to its note).
    """
    out: list[dict[str, Any]] = []
    for row in rows:
        r = dict(row)
        verdict, reason = verdict_of(r, reach, tolerances)
        r["verdict"] = verdict
        if verdict == NOT_VISIBLE:
            r["computed"] = r["delta"] = r["delta_pct"] = None
            r["computed_reason"] = reason
            r["note"] = "; ".join(x for x in (f"not visible: {reason}", r.get("note")) if x)
        elif reason:
            r["computed_reason"] = reason
        r["verdict_rule"] = rule_text(r, reach, tolerances)
        out.append(r)
    return out


def counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Rows per verdict, in :data:`VERDICTS` order (zero counts left out)."""
    c = {v: sum(1 for r in rows if r.get("verdict") == v) for v in VERDICTS}
    return {v: n for v, n in c.items() if n}
