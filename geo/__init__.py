"""icv: the geospatial analyzer for the open ICV test roads of Jiading, Shanghai.

The library works on GeoDataFrames and networkx graphs; ``cli.py`` is a thin
click front end over it. One module per concern:

- :mod:`geo.sources`  road networks in (Overpass, OSM XML/PBF, road layers, cache)
- :mod:`geo.roads`    the normalized roads table, road filters, graph conversion
- :mod:`geo.zones`    test zones (the 463 km² Jiading zone, Shanghai's districts)
- :mod:`geo.gcj02`    GCJ-02 <-> WGS84 conversion
- :mod:`geo.stats`    road statistics (carriageway km, centerline km, streets, ...)
- :mod:`geo.reported` reported figures and their comparison with computed ones
- :mod:`geo.verdicts` a verdict per comparison row (agrees, contradicts, lower bound, not visible ...)
- :mod:`geo.reconcile` the definitions of "road km" and "streets" that come closest to a reported figure
- :mod:`geo.fleet`    fleet logs to test kilometres per road
- :mod:`geo.maps`     folium maps of coverage and mileage share
- :mod:`geo.provenance` where every number comes from
- :mod:`geo.errors`   the one error hierarchy
"""

from ._version import __version__

__all__ = ["__version__"]
