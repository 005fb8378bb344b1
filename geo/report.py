"""The comparison of computed and reported figures, and the written report.

:func:`computed_figures` maps road statistics onto the reported-figure
vocabulary (:mod:`geo.reported`): each reported figure gets every computed value
that can stand beside it, each with its definition, so that a reader sees at
once whether "1,117 km" is matched by centerline or by carriageway km.
:func:`compare_zone` adds a verdict to every row (:mod:`geo.verdicts`) and, on
request, the closest definitions (:mod:`geo.reconcile`); :func:`network_inputs`
gives it what it needs from the network (reach, covered share, test-road mask).
:func:`report_markdown` renders the whole report (``maps/report.md``): the
finding (:func:`conclusion`) first, and :func:`write_verdict_chart` the chart
beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from . import reported as rep
from ._format import md_escape
from .verdicts import (AGREES, CONTRADICTS, EXCEEDS, LOWER_BOUND, NOT_COMPARABLE, NOT_VISIBLE, REPORTED_ONLY,
                       VERDICT_COLOURS, VERDICTS, Tolerances, assign_verdicts)
from .provenance import OSM_ATTRIBUTION, Provenance
from .reported import ComputedValue
from .stats import RoadStats

#: Figures compared for a zone: reported figure -> stats figures that stand beside it.
STAT_FIGURES: dict[str, tuple[str, ...]] = {
    "area_km2": ("zone_area_km2",),
    "district_area_km2": ("zone_area_km2",),
    "test_road_km": ("centerline_km", "carriageway_km"),
    "streets": ("named_streets",),
    "expressway_km": ("expressway_km", "class_km:motorway"),
    "intersections": ("intersections",),
}
#: Jiading's two expressway sections: the default of :func:`computed_figures` only;
#: :func:`compare_zone` compares the refs that the place's reported figures name.
DEFAULT_REFS = ("G2", "G1503")


def _cv(stats: RoadStats, name: str, label: str | None = None) -> ComputedValue | None:
    if name not in stats.figures_by_name:
        return None
    f = stats.figures_by_name[name]
    if f.value is None:
        return None
    unit = {"km²": "km2", "names": "count", "junctions": "count"}.get(f.unit, f.unit)
    return ComputedValue(float(f.value), unit, f"{label or name}: {f.definition}")


def computed_figures(stats: RoadStats | None, *, area_km2: float | None = None,
                     refs: Sequence[str] = DEFAULT_REFS,
                     fleet: Mapping[str, ComputedValue] | None = None) -> dict[str, list[ComputedValue]]:
    """Computed values in the reported-figure vocabulary.

    Parameters
    ----------
    stats
        Road statistics of the zone, or ``None`` when no network was loaded
        (then only the area, and fleet figures if given).
    area_km2
        The zone's equal-area area, used when ``stats`` is ``None``.
    refs
        Route refs to compare as ``ref_km:REF`` (centerline and carriageway km);
        every ref with a reported figure is added by :func:`compare_zone`.
    fleet
        Fleet figures (``vehicles``, ``enterprises``, ``test_mileage_km``...).

    Returns
    -------
    dict
        Figure name -> computed values (centerline first where both exist).
    """
    out: dict[str, list[ComputedValue]] = {}
    if stats is not None:
        for fig, names in STAT_FIGURES.items():
            vals = [cv for n in names if (cv := _cv(stats, n, n.replace("class_km:motorway",
                                                                          "carriageway km of motorway")))]
            if vals:
                out[fig] = vals
        for ref in refs:
            vals = [cv for n in (f"ref_centerline_km:{ref}", f"ref_km:{ref}") if (cv := _cv(stats, n))]
            out[f"ref_km:{ref}"] = vals or [ComputedValue(0.0, "km",
                                                          "ref_centerline_km: no piece with this ref in the zone")]
    elif area_km2 is not None:
        outline = ComputedValue(area_km2, "km2", "zone_area_km2: area of the zone outline in an Albers equal-area "
                                                 "projection centred on the zone")
        out["area_km2"] = [outline]
        out["district_area_km2"] = [outline]
    for name, cv in (fleet or {}).items():
        out.setdefault(name, []).append(cv)
    return out


def compare_zone(place: str, stats: RoadStats | None, *, area_km2: float | None = None,
                 as_of: str | date | None = None, fleet: Mapping[str, ComputedValue] | None = None,
                 figures: Sequence[rep.ReportedFigure] | None = None,
                 allow_unknown_place: bool = False, reach: float | None = None,
                 coverage_share: float | None = None, buffer_m: float = 500.0,
                 test_mask: Any = None, test_label: str | None = None, selection: str | None = None,
                 tolerances: Tolerances | None = None, reconcile: bool = False) -> list[dict[str, Any]]:
    """Rows of figure | reported (value, source, date) | computed (value, definition) | delta | verdict | note.

    With ``allow_unknown_place`` a place with no reported figures (a user's own
    zone) gives computed-only rows instead of an error.

    Parameters
    ----------
    reach
        Share (0-1) of the zone within ``buffer_m`` of any loaded road: below
        ``tolerances.complete_reach`` network figures are lower bounds, and a
        figure the network holds nothing of is ``not visible``
        (:func:`geo.verdicts.assign_verdicts`). None with a network: unknown,
        taken as partial.
    coverage_share
        Share (0-1) of the zone within ``buffer_m`` of the test-road set (of
        every loaded road without one): "test roads cover 463 km²" is set
        against this share of the zone's area, beside the outline's area.
    test_mask
        True for the road pieces of the test-road set, by position in the roads
        table (the statistics' table may hold more rows after it); test-road km are
        then the km of that set. Without it they are the km of every loaded
        road of ``selection`` and the note says "no test-road set".
    test_label
        The test-road set's file, for the definitions.
    selection
        The road selection, e.g. the filter name (``drive``), for the notes.
    tolerances
        Verdict tolerances (2 % areas, 5 % lengths and counts by default).
    reconcile
        Add ``closest_definitions`` and ``definitions_tried`` to each row
        (:func:`geo.reconcile.reconcile_rows`).

    Returns
    -------
    list of dict
        The keys of :data:`geo.reported.COMPARE_COLUMNS` plus ``verdict``,
        ``verdict_rule`` (and ``computed_reason`` where computed is left out;
        ``closest_definitions`` with ``reconcile``).
    """
    from .errors import InputError

    try:
        reported = rep.figures_for(place, as_of, figures=figures)
    except InputError:
        if not allow_unknown_place or place in rep.places(figures):
            raise  # an unknown place asked for by name, or a known place with a bad date
        reported = []  # a zone with no reported figures: computed-only rows
    # reference roads are those the place's figures name (Jiading: G2, G1503), never a default list
    refs = sorted({r.figure.split(":", 1)[1] for r in reported if r.figure.startswith("ref_km:")})
    computed = computed_figures(stats, area_km2=area_km2, refs=refs, fleet=fleet)
    mask_p = None
    sel = f"the {selection} selection" if selection else "the loaded selection"
    if stats is not None:
        zone_km2 = stats.area_km2 if stats.area_km2 is not None else area_km2
        if test_mask is not None:
            # the mask is on the roads table; statistics may have run on it plus pieces around the zone
            # (Network.stats_roads: the roads first, in order), which are never test roads here
            mask = np.asarray(test_mask, dtype=bool)
            pos = stats.pieces["piece"].to_numpy(dtype=np.int64)
            mask_p = np.zeros(len(pos), dtype=bool)
            inside = pos < len(mask)
            mask_p[inside] = mask[pos[inside]]
            computed["test_road_km"] = _test_set_km(stats, mask_p, test_label)
        if coverage_share is not None and zone_km2:
            whose = (f"the test-road set {test_label or ''}".rstrip() if test_mask is not None
                     else f"any loaded road (no test-road set: every road of {sel})")
            covered = ComputedValue(coverage_share * zone_km2, "km2",
                                    f"covered_area_km2: zone area within {buffer_m:g} m of {whose} "
                                    f"({100 * coverage_share:.1f} % of the zone's {zone_km2:.2f} km², equal-area)")
            computed["area_km2"] = [covered, *computed.get("area_km2", [])]
    rows = rep.compare(reported, computed)
    if stats is not None or area_km2 is not None:
        for r in rows:  # a zone and network were given: say why there is no computed value
            if r.get("computed") is None and str(r.get("note", "")).startswith("reported only: no zone/network given"):
                r["note"] = r["note"].replace("no zone/network given", "no computed counterpart", 1)
    if stats is not None and test_mask is None:
        for r in rows:
            if r["figure"] == "test_road_km" and r.get("computed") is not None:
                r["note"] = f"no test-road set: km of every road of {sel}; " + r["note"]
    rows = assign_verdicts(rows, reach=reach if stats is not None else None, tolerances=tolerances or Tolerances())
    if reconcile:
        from .reconcile import reconcile_rows

        tol = tolerances or Tolerances()
        rows = reconcile_rows(rows, stats.pieces if stats is not None else None, test_mask=mask_p,
                              within_pct={"km": tol.length_pct, "count": tol.count_pct})
    return rows


def _test_set_km(stats: RoadStats, mask: np.ndarray, label: str | None) -> list[ComputedValue]:
    """Centerline and carriageway km of the test-road set's pieces (pairing as in the whole network)."""
    p = stats.pieces
    what = f"the test-road set {label}" if label else "the test-road set"
    return [ComputedValue(float(p["centerline_m"].to_numpy()[mask].sum()) / 1000.0, "km",
                          f"test_set_centerline_km: centerline km of the pieces of {what} (a divided road once, "
                          f"as paired in the whole network; metres in {stats.crs})"),
            ComputedValue(float(p["clipped_m"].to_numpy()[mask].sum()) / 1000.0, "km",
                          f"test_set_carriageway_km: carriageway km of the pieces of {what} (each carriageway; "
                          f"clipped at the zone boundary, metres in {stats.crs})")]


@dataclass
class NetworkInputs:
    """What :func:`compare_zone` needs from the road network beyond its statistics.

    Attributes
    ----------
    compare_kw
        Keywords for :func:`compare_zone`: ``reach``, ``coverage_share``,
        ``buffer_m``, ``selection`` and, with a test-road set, ``test_mask`` and
        ``test_label``.
    reach_text
        The network-reach sentence (:func:`network_reach`).
    coverage
        The coverage of every loaded road within 500 m (a coverage map can reuse it).
    unmatched
        Labels of test-road entries that match no road (for warnings).
    """

    compare_kw: dict[str, Any]
    reach_text: str
    coverage: Any
    unmatched: list[str] = field(default_factory=list)


def network_inputs(roads: Any, zone_geom: Any, *, zone_name: str = "zone", selection: str | None = None,
                   test_set: Any = None, buffer_m: float = 500.0) -> NetworkInputs:
    """Reach, covered share and test-road mask of a loaded network, for :func:`compare_zone`.

    Parameters
    ----------
    roads
        The roads table (EPSG:4326) the statistics were computed from.
    zone_geom
        The zone (EPSG:4326).
    zone_name
        For the coverage record.
    selection
        The road filter's name (``drive``), for the notes.
    test_set
        A :class:`geo.testroads.TestRoadSet`, or None (every loaded road is a test road).
    buffer_m
        Distance of the covered-area figure (the reach is always within 500 m).

    Returns
    -------
    NetworkInputs
    """
    from .maps import compute_coverage
    from .testroads import match_test_roads

    cov_all = compute_coverage(roads, zone_geom, zone_name=zone_name)
    reach = cov_all.share_within
    kw: dict[str, Any] = {"reach": reach, "coverage_share": reach, "selection": selection, "buffer_m": buffer_m}
    unmatched: list[str] = []
    mask = None
    if test_set is not None:
        match = match_test_roads(roads, test_set)
        unmatched = [e.label for e in match.unmatched]
        mask = match.mask.to_numpy(dtype=bool)
        kw.update(test_mask=mask, test_label=test_set.label)
    if mask is not None or buffer_m != cov_all.buffer_m:
        kw["coverage_share"] = compute_coverage(roads, zone_geom, zone_name=zone_name, test_mask=mask,
                                                buffer_m=buffer_m).share_within
    return NetworkInputs(kw, network_reach(roads, zone_geom, share=reach), cov_all, unmatched)


def network_reach(roads: Any, zone_geom: Any, buffer_m: float = 500.0, share: float | None = None) -> str:
    """How much of the zone the loaded network reaches: a completeness check.

    The share of the zone's area within ``buffer_m`` of a loaded road. A whole
    district's drive network reaches nearly all of it; a low share means the
    extract covers part of the zone, and every road figure is a lower bound.
    """
    if share is None:  # a coverage already computed for every road can pass its share
        from .maps import compute_coverage

        share = compute_coverage(roads, zone_geom, buffer_m=buffer_m).share_within
    text = f"{100 * share:.1f}% of the zone lies within {buffer_m:g} m of a loaded road"
    if share < 0.8:
        text += " (the network covers part of the zone only: road figures are lower bounds)"
    return text


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and v.is_integer() and abs(v) >= 1:
        return f"{v:,.0f}"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)




def _best_rows(comparison: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One row per reported figure: the agreeing one where a definition agrees, else the first."""
    by_fig: dict[str, list[Mapping[str, Any]]] = {}
    for r in comparison:
        if r.get("reported") is not None:
            by_fig.setdefault(str(r.get("figure")), []).append(r)
    order = {v: i for i, v in enumerate(VERDICTS)}
    best = []
    for rows in by_fig.values():
        testing = [r for r in rows if r.get("verdict") != NOT_COMPARABLE] or rows
        best.append(min(testing, key=lambda r: (order.get(str(r.get("verdict")), 99), abs(r.get("delta_pct") or 0))))
    return best


def _num(v: Any, unit: str | None = None) -> str:
    u = {"km2": " km²", "km": " km", "count": "", "%": " %", "h": " h"}.get(str(unit), f" {unit}" if unit else "")
    if v is None:
        return "—"
    v = float(v)
    text = f"{v:,.0f}" if v.is_integer() or abs(v) >= 1000 else f"{v:,.1f}"
    return text + u


def _list(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def conclusion(comparison: Sequence[Mapping[str, Any]], *, place: str, reach: float | None = None) -> list[str]:
    """The finding in 3-6 plain sentences, generated from the verdicts of ``comparison``.

    Parameters
    ----------
    comparison
        Rows with ``verdict`` (:func:`compare_zone`).
    place
        The place whose reported figures were compared.
    reach
        Share (0-1) of the zone within 500 m of a loaded road, when known.

    Returns
    -------
    list of str
        Sentences: how many figures OSM can test; what agrees; what it cannot
        see and why; what disagrees and by how much; the closest definitions;
        what is reported only. Figure names are plain (escape them for Markdown).
    """
    best = _best_rows(comparison)
    if not best:
        return [f"No reported figures of {place} are on record, so nothing can be confirmed or contradicted.",
                "The tables below list what OpenStreetMap gives for the zone.",
                "Add your own figures with --reported FILE.toml (the schema of data/reported_figures.toml) to "
                "set them against these."]
    by = {v: [r for r in best if r.get("verdict") == v] for v in VERDICTS}
    testable = [r for r in best if r.get("verdict") in (AGREES, CONTRADICTS, LOWER_BOUND, EXCEEDS)]
    out = [f"Of {len(best)} reported figures of {place}, {len(testable)} can be tested against OpenStreetMap here"
           + (f" (the loaded network reaches {100 * reach:.1f} % of the zone)." if reach is not None else ".")]
    agree = by[AGREES]
    if agree:
        out.append("OSM agrees with " + _list([f"{r['figure']} ({_num(r['reported'], r['unit'])} reported, "
                                               f"{_num(r['computed'], r['unit'])} computed)" for r in agree]) + ".")
    else:
        out.append("None of them is confirmed within its tolerance.")
    hidden = by[NOT_VISIBLE]
    if hidden:
        why = (f"the extract reaches only {100 * reach:.1f} % of the zone" if reach is not None
               else "the network's reach is unknown")
        out.append(f"OSM cannot see {_list([str(r['figure']) for r in hidden])}: the loaded network holds none of "
                   f"{'them' if len(hidden) > 1 else 'it'} and {why}, so {'they' if len(hidden) > 1 else 'it'} may "
                   "lie outside the extract (not a sign that the roads do not exist).")
    low = by[LOWER_BOUND] + by[EXCEEDS]
    if low:
        parts = [f"{r['figure']} {_num(r['computed'], r['unit'])} against {_num(r['reported'], r['unit'])} "
                 f"({r['delta_pct']:+.0f} %, {r['verdict']})" for r in low]
        out.append("On this partial network the road figures are lower bounds: " + "; ".join(parts) + ".")
    bad = by[CONTRADICTS]
    if bad:
        parts = [f"{r['figure']} ({_num(r['computed'], r['unit'])} computed against "
                 f"{_num(r['reported'], r['unit'])}, {r['delta_pct']:+.0f} %)" for r in bad]
        out.append("OSM contradicts " + "; ".join(parts) + ".")
    rec = [r for r in best if r.get("closest_definitions")]
    if rec:
        parts = []
        for r in rec[:2]:
            d = r["closest_definitions"][0]
            within = float(r.get("definitions_within_pct", 5.0))
            hit = abs(d["delta_pct"]) <= within
            parts.append(f"for {r['figure']} {'the closest' if hit else 'no'} definition"
                         + (f" of the {r.get('definitions_tried', 0)} tried is {d['definition']} "
                            f"({_num(d['value'], r['unit'])}, {d['delta_pct']:+.1f} %)" if hit else
                            f" of the {r.get('definitions_tried', 0)} tried comes within {within:g} %; the nearest is "
                            f"{d['definition']} ({_num(d['value'], r['unit'])}, {d['delta_pct']:+.1f} %)"))
        partial = any(r.get("verdict") in (LOWER_BOUND, EXCEEDS) for r in rec[:2])
        out.append("Reconciling definitions" + (" (on this partial network, lower bounds too)" if partial else "")
                   + ": " + "; ".join(parts) + ".")
    only = by[REPORTED_ONLY]
    if only and len(out) < 6:
        out.append(f"{len(only)} figures ({_list([str(r['figure']) for r in only][:4])}"
                   + (" ..." if len(only) > 4 else "") + ") cannot be computed from a road network and stay "
                   "reported only.")
    if len(out) < 3:
        out.append("Each verdict's rule is listed below the table.")
    return out[:6]


def _short_label(definition: str | None) -> str:
    from .verdicts import label_of

    return label_of(definition) or "—"


def report_markdown(*, zone_name: str, place: str, stats: RoadStats | None, comparison: Sequence[Mapping[str, Any]],
                    provenance: Provenance | None, maps: Mapping[str, str] | None = None,
                    by_class: Sequence[Mapping[str, Any]] | None = None, reach: str | None = None,
                    reach_share: float | None = None, chart: str | None = None,
                    zone_notes: Sequence[str] | None = None) -> str:
    """The report as Markdown: the finding, the comparison, statistics, definitions, maps, provenance.

    ``reach`` is the network-reach sentence, ``reach_share`` its share (0-1) for the
    conclusion; ``chart`` the file name of the reported-vs-computed chart beside
    report.md (embedded when given). ``zone_notes`` are listed under the provenance
    (whose reported figures, maps skipped).
    """
    lines = [f"# ICV test roads of {md_escape(place)}: computed from OpenStreetMap and compared with reported "
             "figures", ""]
    if provenance is not None:
        lines += [f"- data source: {provenance.source_kind} {md_escape(provenance.source)}"
                  + (f" (sha256 {provenance.source_sha256[:16]})" if provenance.source_sha256 else ""),
                  f"- OSM data timestamp: {md_escape(provenance.osm_timestamp or 'unknown')}",
                  f"- road filter: {md_escape(provenance.filter)}", f"- zone: {md_escape(zone_name)}",
                  f"- made by icv {md_escape(provenance.tool_version)} at {md_escape(provenance.created)}",
                  f"- {OSM_ATTRIBUTION}"]
        if reach:
            lines.append(f"- network reach: {md_escape(reach)}")
        lines += [f"- {md_escape(n)}" for n in zone_notes or ()]
        lines.append("")
    if any("verdict" in r for r in comparison):
        lines += ["## Finding", "", md_escape(" ".join(conclusion(comparison, place=place, reach=reach_share))), ""]
    lines += ["## Reported and computed", "",
              "| figure | reported | as of | computed | definition | delta % | verdict |",
              "|---|---|---|---|---|---|---|"]
    defs: dict[str, str] = {}
    rules: dict[str, list[str]] = {}
    notes: list[str] = []
    for r in comparison:
        label = _short_label(r.get("definition"))
        if r.get("definition"):
            defs.setdefault(label, str(r["definition"]).partition(":")[2].strip() or str(r["definition"]))
        if r.get("verdict_rule"):
            rules.setdefault(str(r["verdict_rule"]), []).append(str(r.get("figure")))
        computed = _fmt(r.get("computed")) if r.get("computed") is not None else (
            "not visible" if r.get("verdict") == NOT_VISIBLE else "—")
        lines.append("| " + " | ".join([
            md_escape(r.get("figure")), _fmt(r.get("reported")) + (f" {r.get('unit')}" if r.get("reported") is not None else ""),
            md_escape(r.get("as_of") or "—"), computed, md_escape(label),
            _fmt(r.get("delta_pct"), 1), md_escape(r.get("verdict") or "—")]) + " |")
        note = "; ".join(x for x in (r.get("note"), r.get("computed_reason") if r.get("verdict") != NOT_VISIBLE else None)
                         if x)
        if r.get("closest_definitions"):
            from .reconcile import closest_text

            note = "; ".join(x for x in (note, f"closest of {r.get('definitions_tried')} definitions: "
                                         + closest_text(r)) if x)
        if note or r.get("source"):
            notes.append(f"- {md_escape(r.get('figure'))} ({md_escape(label)}): {md_escape(note or '')}"
                         + (f". Source: {md_escape(r.get('source'))}." if r.get("source") else ""))
    if chart:
        lines += ["", f"![reported and computed figures, coloured by verdict]({chart})"]
    if defs:
        lines += ["", "### Definitions", ""] + [f"- **{md_escape(k)}**: {md_escape(v)}" for k, v in defs.items()]
    if rules:
        lines += ["", "### Verdict rules", ""] + [f"- {md_escape(', '.join(dict.fromkeys(figs)))}: {md_escape(rule)}"
                                                  for rule, figs in rules.items()]
    if notes:
        lines += ["", "### Notes and sources", ""] + notes
    if stats is not None:
        lines += ["", "## Road statistics of the zone", "", "| figure | value | unit | definition |", "|---|---|---|---|"]
        for f in stats.figures(detail=False):
            lines.append(f"| {md_escape(f['figure'])} | {_fmt(f['value'])} | {f['unit']} | {md_escape(f['definition'])} |")
    if by_class:
        lines += ["", "## Km by class", "", "| class | carriageway km | centerline km |", "|---|---|---|"]
        for r in by_class:
            lines.append(f"| {md_escape(r.get('highway'))} | {_fmt(r.get('carriageway_km'))} | {_fmt(r.get('centerline_km'))} |")
    if maps:
        lines += ["", "## Maps", ""]
        lines += [f"- {md_escape(k)}: [{v}]({v})" for k, v in maps.items()]
    lines += ["", "---", f"Road data {OSM_ATTRIBUTION}. Reported figures: see the source column; "
              "`icv compare --history` lists every reported figure over time.", ""]
    return "\n".join(lines)


def verdict_chart_svg(comparison: Sequence[Mapping[str, Any]], *, title: str,
                      footer: str = f"Road data {OSM_ATTRIBUTION}") -> str:
    """A chart of computed as a share of reported per figure, coloured by verdict, as SVG text.

    One bar per reported figure (:func:`_best_rows`: the agreeing definition
    where there is one): its length is computed / reported in percent, the line
    at 100 % is the reported value, and the label says both numbers. A figure
    OSM cannot see is a grey "not visible" mark at 0, never a bar of -100 %.
    Rows that are reported only or not comparable are left out. Drawn with
    matplotlib's object API (no global pyplot state), imported only here.
    """
    import matplotlib

    # names from OSM or user files are data: no mathtext ($...$), a fixed hash salt, no date: same input, same file
    with matplotlib.rc_context({"svg.hashsalt": "icv", "svg.fonttype": "none", "text.parse_math": False,
                                "text.usetex": False}):
        return _chart_svg(comparison, title, footer)


def _chart_svg(comparison: Sequence[Mapping[str, Any]], title: str, footer: str) -> str:
    import io

    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = [r for r in _best_rows(comparison) if r.get("verdict") not in (REPORTED_ONLY, NOT_COMPARABLE)]
    n = max(len(rows), 1)
    fig = Figure(figsize=(8.0, 1.8 + 0.45 * n))
    FigureCanvasSVG(fig)
    ax = fig.add_subplot(1, 1, 1)
    labels, widths, colours, texts = [], [], [], []
    for r in rows:
        labels.append(f"{r['figure']} ({_short_label(r.get('definition'))})")
        if r.get("computed") is None or not r.get("reported"):
            widths.append(0.0)
            texts.append(f"not visible (reported {_num(r.get('reported'), r.get('unit'))})")
        else:
            widths.append(100.0 * float(r["computed"]) / float(r["reported"]))
            texts.append(f"{_num(r['computed'], r.get('unit'))} of {_num(r['reported'], r.get('unit'))}")
        colours.append(VERDICT_COLOURS.get(str(r.get("verdict")), "#000000"))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, widths, color=colours, height=0.6)
    hidden = [yi for yi, r in zip(y, rows, strict=True) if r.get("verdict") == NOT_VISIBLE]
    if hidden:  # unknown, not zero: a hatched outline across the reported value
        ax.barh(hidden, [100.0] * len(hidden), height=0.6, color="none", hatch="//",
                edgecolor=VERDICT_COLOURS[NOT_VISIBLE], linewidth=0.8)
    top = max([110.0, *[w * 1.05 for w in widths]])
    for yi, w, t, r in zip(y, widths, texts, rows, strict=True):
        x = 100.0 if r.get("verdict") == NOT_VISIBLE else min(w, top)
        ax.text(x + top * 0.01, yi, t, va="center", fontsize=8)
    ax.axvline(100.0, color="#333333", linewidth=1, linestyle="--")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, top * 1.45)
    ax.set_xlabel("computed as % of reported (dashed line: the reported value)")
    ax.set_title(title, fontsize=10)
    used = list(dict.fromkeys(str(r.get("verdict")) for r in rows))
    if used:
        ax.legend(handles=[Patch(color=VERDICT_COLOURS[v], label=v) for v in used if v in VERDICT_COLOURS],
                  loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.9 / n), ncol=min(len(used), 4), fontsize=8,
                  frameon=False)
    fig.text(0.01, 0.005, footer, fontsize=6, color="#555555", va="bottom")
    fig.tight_layout(rect=(0, 0.02 + 0.02 * footer.count("\n"), 1, 1))
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")  # no label clipped
    return buf.getvalue()


def write_verdict_chart(path: Any, comparison: Sequence[Mapping[str, Any]], *, title: str,
                        provenance: Provenance | None = None) -> Any:
    """Write :func:`verdict_chart_svg` to ``path`` atomically, its footer naming the data's provenance.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    from pathlib import Path

    from ._atomic import write_text

    import textwrap

    footer = f"Road data {OSM_ATTRIBUTION}"
    if provenance is not None:  # source, OSM timestamp, filter, zone, tool version, attribution
        footer = "\n".join(textwrap.wrap(provenance.summary(), 160))
    p = Path(path)
    write_text(p, verdict_chart_svg(comparison, title=title, footer=footer))
    return p
