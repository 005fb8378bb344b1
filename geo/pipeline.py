"""The main job as a library call: load, statistics, comparison, maps and report.md.

:func:`run_report` does what ``icv report`` does (the command only parses its
options, calls it and renders the summary) and returns a :class:`ReportResult`
whose tables are DataFrames with their provenance in ``.attrs``::

    import geo
    res = geo.run_report(source="skeleton", zone="jiading", out_dir="maps")
    res.comparison[["figure", "reported", "computed", "delta_pct"]]
    res.files            # {'coverage map': PosixPath('maps/coverage.html'), ...}

:func:`compare` is the comparison alone (reported figures beside computed ones).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy modules load when a function runs, not on `import geo`
    import pandas as pd

    from .sources import Network
    from .stats import RoadStats
    from .zones import Zone

#: Figures kept in the printed summary even when nothing is computed for them.
SUMMARY_REPORTED_ONLY = ("vehicles", "enterprises", "test_mileage_km", "share_of_city_mileage")


def _frame(records: Sequence[Mapping[str, Any]], attrs: Mapping[str, Any]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(list(records))
    df.attrs.update(attrs)
    return df


@dataclass(repr=False)
class ReportResult:
    """What :func:`run_report` computed and wrote.

    Attributes
    ----------
    zone, network, stats
        The test zone, the loaded network (roads table + provenance) and its road statistics.
    comparison
        Reported figures beside the computed ones, one row per figure (``.attrs``: provenance).
    figures
        The road statistics, one row per figure (``.attrs``: provenance and method).
    by_class
        Carriageway and centerline km by highway class.
    reach
        The sentence on how much of the zone the loaded network reaches.
    files
        Every file written, by what it is (``report``, ``coverage map``, ...).
    """

    zone: Zone
    network: Network
    stats: RoadStats
    comparison: pd.DataFrame
    figures: pd.DataFrame
    by_class: pd.DataFrame
    reach: str
    place: str
    files: dict[str, Path] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # the comparison as records (None, not NaN)
    test_roads_unmatched: list[str] = field(default_factory=list)  # test-road entries that match no road

    @property
    def provenance(self) -> dict[str, Any]:
        """Where the network comes from (source, OSM timestamp, filter, zone, tool version, licence)."""
        return self.network.provenance.to_dict()

    def summary_rows(self) -> list[dict[str, Any]]:
        """The rows ``icv report`` prints: figures with a computed value, those OSM cannot see, and the
        fleet's reported ones."""
        rows = self.rows or self.comparison.to_dict("records")
        return [r for r in rows if _present(r.get("computed")) or r.get("verdict") == "not visible"
                or r.get("figure") in SUMMARY_REPORTED_ONLY]

    def __repr__(self) -> str:
        files = ", ".join(p.name for p in self.files.values())
        return (f"ReportResult(zone={self.zone.name!r}, pieces={len(self.network.roads):,}, "
                f"figures={len(self.comparison)}, files=[{files}])")


def _present(v: Any) -> bool:
    return v is not None and v == v  # NaN from a DataFrame is not a value


def load(source: str | os.PathLike[str] = "cache", zone: str | os.PathLike[str] | Zone = "jiading", *,
         road_filter: str = "drive", highway: str | None = None, include_private: bool = False,
         overpass_url: str | None = None, timeout: int | None = 180, memory: int | None = None,
         cache_dir: str | os.PathLike[str] | None = None, progress: bool = False,
         fallback_overpass: bool = False, subzones: bool = False, as_of: Any = None) -> tuple[Zone, Network]:
    """The zone and its road network, as the network options of every command describe them.

    ``zone`` is anything ``--zone`` takes (:func:`geo.zones.resolve_zone`: a shipped
    name in any case, a file, ``osm:relation/ID`` in ``source`` or online, a Chinese
    unit by adcode or name); ``subzones`` attaches its child units as sub-zones.

    With ``fallback_overpass`` a ``cache`` source that holds nothing yet is
    pulled through Overpass into the cache (what a bare ``icv report`` does on a
    fresh machine); where Overpass is unreachable the error names the offline
    sources in one line.
    """
    from . import _cache, sources, zones
    from ._paths import cache_dir as default_cache_dir
    from .roads import parse_filter

    flt = parse_filter(road_filter, highway, include_private)
    z = zone if isinstance(zone, zones.Zone) else zones.resolve_zone(zone, source=source, subzones=subzones)
    cdir = Path(cache_dir) if cache_dir is not None else None
    net_kw = dict(road_filter=flt, overpass_url=overpass_url, timeout=timeout, memory=memory, cache_dir=cdir,
                  progress=progress)
    if fallback_overpass and str(source) == "cache":
        key = _cache.cache_key(z.name, flt.label)
        if not _cache.cache_exists(cdir or default_cache_dir(), key):
            from ._overpass import OFFLINE_HINT
            from .errors import SourceUnavailableError

            try:
                sources.pull_to_cache("overpass", zone=z, **net_kw)
            except SourceUnavailableError as e:  # a fresh machine offline: say what works without a network
                raise SourceUnavailableError(f"no cached network of zone {z.name!r}, and {e.what}", where=e.where,
                                             hint=OFFLINE_HINT) from e
    return z, sources.load_network(source, zone=z, as_of=as_of, **net_kw)


def compare(zone: str | os.PathLike[str] | Zone = "jiading", stats: RoadStats | None = None, *,
            as_of: str | None = None, fleet: Mapping[str, Any] | None = None, place: str | None = None,
            **compare_kw: Any) -> pd.DataFrame:
    """Reported figures of the zone's place beside the computed ones (``stats``; none: reported only).

    Returns a DataFrame, one row per figure, with ``reported``, ``computed``,
    ``delta``, ``delta_pct``, source and date; ``.attrs`` holds the provenance.
    """
    rows, attrs = _comparison(zone, stats, as_of=as_of, fleet=fleet, place=place, **compare_kw)
    return _frame(rows, attrs)


def compare_rows(zone: Zone, network: Network | None, *, place: str | None = None, as_of: str | None = None,
                 fleet: Mapping[str, Any] | None = None, figures: Any = None, tolerances: Any = None,
                 test_set: Any = None, buffer_m: float = 500.0, reconcile: bool = False,
                 tool: str | None = None) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """What ``icv compare`` prints: the place compared, its rows (with verdicts) and the lines about them.

    Parameters
    ----------
    zone, network
        The test zone and its loaded network (``None``: reported figures only,
        road figures left out).
    place
        Whose reported figures (default: the zone's place, :func:`geo.reported.place_for_zone`).
        Another place than the zone's gets its reported figures only, nothing computed.
    figures, tolerances
        Your reported figures (:func:`geo.reported.merge_figures`) and verdict
        tolerances (:class:`geo.verdicts.Tolerances`).
    test_set, buffer_m
        The test-road set and the distance of the covered area.
    reconcile
        Add the closest definitions to each reported length and street count.

    Returns
    -------
    (place, rows, meta)
        ``meta`` holds the provenance lines; ``meta["unmatched test roads"]`` the
        test-road entries that match no road.
    """
    from . import report, reported, stats
    from ._version import __version__

    zp = reported.place_for_zone(zone)  # by adcode, name, or the unit containing the zone
    zone_place = zp.place or zone.meta.get("place") or zone.name
    place = place or zone_place
    meta: dict[str, Any] = {"place": place, "as_of": as_of or "latest", "tool": tool or f"icv {__version__}",
                            "reported figures": "data/reported_figures.toml (source and date on each row)",
                            "zone's figures": zp.how}
    if figures is not None:
        meta["reported figures"] += " with your --reported file"
    if place.casefold() != str(zone_place).casefold():
        # another place: its reported figures only, nothing computed for it
        meta["computed"] = f"none: the zone {zone.name!r} is not {place}"
        return place, report.compare_zone(place, None, as_of=as_of, fleet=fleet, figures=figures,
                                          tolerances=tolerances), meta
    st = None
    cmp_kw: dict[str, Any] = {}
    if network is not None:
        st = stats.road_stats(network.stats_roads, zone, provenance=network.provenance)
        inputs = report.network_inputs(network.roads, zone.geometry, zone_name=zone.name,
                                       selection=network.provenance.filter, test_set=test_set, buffer_m=buffer_m)
        cmp_kw = inputs.compare_kw
        meta["network reach"] = inputs.reach_text
        meta["network"] = network.provenance.summary()
        if inputs.unmatched:
            meta["unmatched test roads"] = list(inputs.unmatched)
        if test_set is not None:
            meta["test-road set"] = test_set.label
    rows = report.compare_zone(place, st, area_km2=zone.area_km2, as_of=as_of, fleet=fleet,
                               allow_unknown_place=True, figures=figures, tolerances=tolerances,
                               reconcile=reconcile, **cmp_kw)
    meta["zone"] = f"{zone.name} ({zone.area_km2:.2f} km², equal-area)"
    return place, rows, meta


def _comparison(zone: str | os.PathLike[str] | Zone, stats: RoadStats | None, *, as_of: str | None,
                fleet: Mapping[str, Any] | None, place: str | None,
                **compare_kw: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from . import report, reported, zones
    from ._version import __version__

    z = zone if isinstance(zone, zones.Zone) else zones.resolve_zone(zone)
    zp = reported.place_for_zone(z)  # by adcode, name, or the unit containing the zone
    how = zp.how if place is None or place == zp.place else f"figures of {place}, as asked"
    place = place or zp.place or z.meta.get("place") or z.name
    rows = report.compare_zone(place, stats, area_km2=z.area_km2, as_of=as_of, fleet=fleet,
                               allow_unknown_place=True, **compare_kw)
    attrs: dict[str, Any] = {"place": place, "as_of": as_of or "latest", "tool_version": __version__,
                             "zone": f"{z.name} ({z.area_km2:.2f} km², equal-area)",
                             "reported figures": "data/reported_figures.toml (source and date on each row)",
                             "zone's figures": how}
    if stats is not None and stats.provenance is not None:
        attrs["network"] = stats.provenance.to_dict()
    return rows, attrs


def run_report(source: str | os.PathLike[str] = "cache", zone: str | os.PathLike[str] | Zone = "jiading",
               out_dir: str | os.PathLike[str] = "maps", *, road_filter: str = "drive", highway: str | None = None,
               include_private: bool = False, as_of: str | None = None, basemap: str = "osm",
               offline: bool = False, cdn: bool = False, maps: bool = True,
               fleet_summary: str | os.PathLike[str] | None = None, overpass_url: str | None = None,
               timeout: int | None = 180, memory: int | None = None,
               cache_dir: str | os.PathLike[str] | None = None, progress: bool = False,
               fallback_overpass: bool = True, on_step: Callable[[int, int, str], None] | None = None,
               history: bool = False, history_time: str | None = None, ohsome_url: str | None = None,
               test_set: Any = None, buffer_m: float = 500.0, reconcile: bool = True,
               **compare_kw: Any) -> ReportResult:
    """The main job: load the network, compute statistics, compare, write report.md and both maps.

    Parameters
    ----------
    source, zone
        Road network (a file, ``overpass``, ``skeleton`` or ``cache``) and test zone (name or file).
    out_dir
        Folder for ``report.md``, ``coverage.html`` and ``mileage_share.html`` (created).
    road_filter, highway, include_private
        Which ways are roads (``drive``, ``arterial``, ``all-roads``; or highway classes).
    as_of
        Compare with the latest reported figures at this date; with ``overpass``, an OSM history
        file or a cache pulled with ``icv pull --as-of``, the network of that date too (the report
        says which dates it compares).
    basemap, offline, cdn
        Map tiles (``osm``, ``amap``, ``none``), no remote tiles, Leaflet from a CDN
        instead of inlined.
    maps
        Write the two maps (else report.md only).
    fleet_summary
        ``mileage_figures.json`` of ``icv fleet mileage``: fleet figures for the comparison.
    overpass_url, timeout, memory, cache_dir
        Overpass and cache settings.
    progress
        Progress bars on stderr (on a terminal only).
    fallback_overpass
        An empty cache is filled through Overpass first.
    on_step
        Called as ``on_step(i, n, text)`` before each step (the CLI prints it).
    history, history_time, ohsome_url
        Add the chart of the zone's OSM km over time (the history file given as ``source``, else
        the ohsome API) beside the reported figures over time, linked from report.md
        (:func:`geo.history.add_to_report`); fetched first, so a failure writes nothing.
    test_set, buffer_m
        A :class:`geo.testroads.TestRoadSet` (test-road km and the covered area are
        computed on it; None: every loaded road), and the distance of the covered area.
    reconcile
        Add the closest definitions to each reported length and street count.
    **compare_kw
        Passed on to the comparison (:func:`geo.report.compare_zone`), e.g. ``figures``
        (your reported figures), ``tolerances`` (:class:`geo.verdicts.Tolerances`).

    Returns
    -------
    ReportResult
        Its ``files`` name every file written.

    Raises
    ------
    geo.errors.IcvError
        Bad input (``ValueError``), unreachable source (``ConnectionError``), cache or output faults
        (``OSError``): one line each.
    """
    from . import maps as gmaps
    from . import report as rep
    from . import stats as gstats
    from ._atomic import write_text
    from ._version import __version__

    step = on_step or (lambda i, n, text: None)
    out = Path(out_dir)
    n = 5 if maps else 3
    fleet = None
    if fleet_summary is not None:  # a bad file fails before the long work
        from .fleet import fleet_figures_from_file

        fleet = fleet_figures_from_file(fleet_summary)
    bm = gmaps.resolve_basemap(basemap, offline=offline) if maps else None  # a bad basemap fails early too
    from . import history as hist
    from . import zones as gzones
    from .roads import parse_filter

    z0 = zone if isinstance(zone, gzones.Zone) else gzones.resolve_zone(zone, source=source)
    flt = parse_filter(road_filter, highway, include_private)
    when = hist.network_as_of(str(source), as_of, zone_name=z0.name, filter_label=flt.label, cache_dir=cache_dir)
    if as_of and when is None and str(source) == "cache":
        import warnings

        warnings.warn(f"no network pulled as of {as_of} in the cache (`icv pull --as-of {as_of}`); the report "
                      "compares the current cache with the figures of that date and says so", hist.AsOfWarning,
                      stacklevel=2)
    osm_history = None
    if history:  # fetched first: a bad range or an ohsome failure stops the report before it writes anything
        time_range = history_time or hist.DEFAULT_RANGE
        hist.parse_time_range(time_range)
        src = str(source) if hist.is_history_source(str(source)) else "ohsome"
        step(0, n, f"OSM history of zone {z0.name} from {src} ({time_range})")
        osm_history = hist.load_history(src, z0, flt, time_range, ohsome_url=ohsome_url, timeout=timeout or 120)
    step(1, n, f"loading the road network ({source}) of zone {z0.name}")
    z, net = load(source, z0, road_filter=road_filter, highway=highway, include_private=include_private,
                  overpass_url=overpass_url, timeout=timeout, memory=memory, cache_dir=cache_dir, progress=progress,
                  fallback_overpass=fallback_overpass and when is None, as_of=when)
    step(2, n, f"road statistics of {len(net.roads):,} pieces")
    st = gstats.road_stats(net.stats_roads, z, provenance=net.provenance)  # with the margin around the zone
    # reach, covered share and test-road mask: verdicts need them (a partial network gives lower bounds)
    inputs = rep.network_inputs(net.roads, z.geometry, zone_name=z.name, selection=net.provenance.filter,
                                test_set=test_set, buffer_m=buffer_m)
    rows, cattrs = _comparison(z, st, as_of=as_of, fleet=fleet, place=None, reconcile=reconcile,
                               **{**inputs.compare_kw, **compare_kw})
    place = cattrs["place"]
    notes = ["reported figures: " + str(cattrs["zone's figures"])]
    files: dict[str, Path] = {}
    if maps:
        step(3, n, "coverage map")
        cov = inputs.coverage  # every loaded road within 500 m: computed once, also the network's reach
        m = gmaps.coverage_map(net.roads, z.geometry, zone_name=z.name, subzones=z.subzones, coverage=cov,
                               provenance=net.provenance, basemap=bm)
        files["coverage map"] = gmaps.save_map(m, out / "coverage.html", offline=offline, cdn=cdn)
        files["coverage map provenance"] = out / "coverage.provenance.json"
        step(4, n, "test-mileage share map")
        mc = gmaps.mileage_city_for_zone(z, as_of=as_of)  # the city containing the zone, if it has figures
        if mc.city is None:
            notes.append(mc.note)
            step(4, n, mc.note)
        else:
            shares = gmaps.reported_mileage_shares(mc.districts, city=mc.city, as_of=as_of)
            m = gmaps.mileage_map(shares, mc.districts, city=shares.city, basemap=bm,
                                  provenance={"districts": mc.districts_meta,
                                              "reported_figures": "data/reported_figures.toml",
                                              "tool_version": __version__})
            files["test-mileage share map"] = gmaps.save_map(m, out / "mileage_share.html", offline=offline,
                                                             cdn=cdn)
            files["test-mileage share map provenance"] = out / "mileage_share.provenance.json"
    step(n, n, f"writing {out / 'report.md'}")
    by_class = gstats.breakdown(st, "class")
    reach = inputs.reach_text
    chart = rep.write_verdict_chart(out / "verdicts.svg", rows, title=f"{place}: reported and computed figures",
                                    provenance=net.provenance)
    md = rep.report_markdown(zone_name=z.name, place=place, stats=st, comparison=rows,
                             provenance=net.provenance,
                             maps={k: p.name for k, p in files.items() if not k.endswith("provenance")},
                             by_class=by_class, reach=reach, reach_share=inputs.compare_kw["reach"],
                             chart=chart.name, zone_notes=notes)
    written: dict[str, Path] = {}
    md = hist.add_to_report(md, as_of=as_of, network_date=when.label if when else net.provenance.osm_timestamp,
                            network_is_as_of=when is not None, history=osm_history, place=place, out_dir=out,
                            written=written)
    files = {"report": write_text(out / "report.md", md), "verdict chart": chart, **files, **written}
    prov = net.provenance.to_dict()
    comparison = _frame(rows, {**cattrs, "network reach": reach})
    return ReportResult(zone=z, network=net, stats=st, comparison=comparison, rows=rows,
                        figures=_frame(st.figures(detail=True), {**prov, **gstats.stats_meta(st)}),
                        by_class=_frame(by_class, prov), reach=reach, place=place, files=files,
                        test_roads_unmatched=inputs.unmatched)


__all__ = ["ReportResult", "compare", "load", "run_report"]
