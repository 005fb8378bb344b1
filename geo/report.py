"""The comparison of computed and reported figures, and the written report.

:func:`computed_figures` maps road statistics onto the reported-figure
vocabulary (:mod:`geo.reported`): each reported figure gets every computed value
that can stand beside it, each with its definition, so that a reader sees at
once whether "1,117 km" is matched by centerline or by carriageway km.
:func:`report_markdown` renders the whole report (``maps/report.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from . import reported as rep
from ._format import md_escape
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
            out[f"ref_km:{ref}"] = vals or [ComputedValue(0.0, "km", f"no piece with ref {ref} in the zone")]
    elif area_km2 is not None:
        out["area_km2"] = [ComputedValue(area_km2, "km2", "zone area in an Albers equal-area projection")]
    for name, cv in (fleet or {}).items():
        out.setdefault(name, []).append(cv)
    return out


def compare_zone(place: str, stats: RoadStats | None, *, area_km2: float | None = None,
                 as_of: str | date | None = None, fleet: Mapping[str, ComputedValue] | None = None,
                 figures: Sequence[rep.ReportedFigure] | None = None,
                 allow_unknown_place: bool = False) -> list[dict[str, Any]]:
    """Rows of figure | reported (value, source, date) | computed (value, definition) | delta | note.

    With ``allow_unknown_place`` a place with no reported figures (a user's own
    zone) gives computed-only rows instead of an error.
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
    rows = rep.compare(reported, computed)
    if stats is not None or area_km2 is not None:
        for r in rows:  # a zone and network were given: say why there is no computed value
            if r.get("computed") is None and str(r.get("note", "")).startswith("reported only: no zone/network given"):
                r["note"] = r["note"].replace("no zone/network given", "no computed counterpart", 1)
    return rows


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




def report_markdown(*, zone_name: str, place: str, stats: RoadStats | None, comparison: Sequence[Mapping[str, Any]],
                    provenance: Provenance | None, maps: Mapping[str, str] | None = None,
                    by_class: Sequence[Mapping[str, Any]] | None = None, reach: str | None = None,
                    zone_notes: Sequence[str] | None = None) -> str:
    """The report as Markdown: comparison, statistics, definitions, maps, provenance.

    ``zone_notes`` are listed under the provenance (whose reported figures, maps skipped).
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
    lines += ["## Reported and computed", "",
              "| figure | reported | as of | source | computed | definition | delta | delta % | note |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in comparison:
        lines.append("| " + " | ".join([
            md_escape(r.get("figure")), _fmt(r.get("reported")) + (f" {r.get('unit')}" if r.get("reported") is not None else ""),
            md_escape(r.get("as_of") or "—"), md_escape(r.get("source") or "—"), _fmt(r.get("computed")),
            md_escape(r.get("definition") or "—"), _fmt(r.get("delta")),
            _fmt(r.get("delta_pct"), 1), md_escape(r.get("note") or "")]) + " |")
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
