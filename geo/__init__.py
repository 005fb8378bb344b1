"""icv: the geospatial analyzer for the open ICV test roads of Jiading, Shanghai.

The library works on GeoDataFrames and networkx graphs; ``cli.py`` is a thin
click front end over it. One module per concern:

- :mod:`geo.sources`  road networks in (Overpass, OSM XML/PBF, road layers, cache)
- :mod:`geo.roads`    the normalized roads table, road filters, graph conversion
- :mod:`geo.zones`    test zones (the 463 km² Jiading zone, Shanghai's districts)
- :mod:`geo.gcj02`    GCJ-02 <-> WGS84 conversion
- :mod:`geo.stats`    road statistics (carriageway km, centerline km, streets, ...)
- :mod:`geo.reported` reported figures and their comparison with computed ones
- :mod:`geo.history`  OSM as of a date; the zone's network over time (ohsome, history files); its chart
- :mod:`geo.verdicts` a verdict per comparison row (agrees, contradicts, lower bound, not visible ...)
- :mod:`geo.reconcile` the definitions of "road km" and "streets" that come closest to a reported figure
- :mod:`geo.fleet`    fleet logs to test kilometres per road
- :mod:`geo.maps`     folium maps of coverage and mileage share
- :mod:`geo.provenance` where every number comes from
- :mod:`geo.errors`   the one error hierarchy
- :mod:`geo.pipeline` the main job as one call (:func:`run_report`)

The public API is importable from here; each name loads its module on first
use (module ``__getattr__``), so ``import geo`` stays cheap::

    import geo
    zone = geo.load_zone("jiading")
    net = geo.load_network("skeleton", zone=zone)
    st = geo.road_stats(net, zone)              # a Network: its pieces near the zone too
    geo.compare(zone, st)                       # a DataFrame, provenance in .attrs
    res = geo.run_report(source="skeleton", zone="jiading", out_dir="maps")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

#: Public name -> the module that defines it.
_API = {
    "load_zone": "zones", "Zone": "zones",
    "resolve_zone": "zones",  # --zone: names in any case, Chinese units, osm:relation/ID
    "load_network": "sources", "Network": "sources", "pull_to_cache": "sources",
    "parse_filter": "roads",
    "road_stats": "stats", "RoadStats": "stats", "StatsParams": "stats",
    "compare": "pipeline", "compare_rows": "pipeline", "run_report": "pipeline", "ReportResult": "pipeline",
    "compute_mileage": "fleet", "MileageResult": "fleet",
    "compute_coverage": "maps", "coverage_map": "maps", "mileage_map": "maps", "save_map": "maps",
    "simulate_fleet": "simulate",
    "wgs84_to_gcj02": "gcj02", "gcj02_to_wgs84": "gcj02",
    "write_geometry": "export", "GEOMETRY_SUFFIXES": "export",
    "IcvError": "errors", "InputError": "errors", "SourceUnavailableError": "errors", "CacheError": "errors",
    "OutputError": "errors",
}

__all__ = ["__version__", "load_zone", "Zone", "load_network", "Network", "pull_to_cache", "parse_filter",
           "road_stats", "RoadStats", "StatsParams", "compare", "compare_rows", "run_report", "ReportResult",
           "compute_mileage", "MileageResult", "compute_coverage", "coverage_map", "mileage_map", "save_map",
           "simulate_fleet", "wgs84_to_gcj02", "gcj02_to_wgs84", "write_geometry", "GEOMETRY_SUFFIXES",
           "IcvError", "InputError", "SourceUnavailableError", "CacheError", "OutputError", "resolve_zone"]


def __getattr__(name: str) -> Any:
    mod = _API.get(name)
    if mod is None:
        raise AttributeError(f"module 'geo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value  # next time without __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from .export import GEOMETRY_SUFFIXES, write_geometry
    from .errors import CacheError, IcvError, InputError, OutputError, SourceUnavailableError
    from .fleet import MileageResult, compute_mileage
    from .gcj02 import gcj02_to_wgs84, wgs84_to_gcj02
    from .maps import compute_coverage, coverage_map, mileage_map, save_map
    from .pipeline import ReportResult, compare, compare_rows, run_report
    from .roads import parse_filter
    from .simulate import simulate_fleet
    from .sources import Network, load_network, pull_to_cache
    from .stats import RoadStats, StatsParams, road_stats
    from .zones import Zone, load_zone, resolve_zone
