"""Property-based tests (hypothesis) for the parsers and the geometry core.

Invariants
----------
- Reading any OSM XML document, valid or mangled, either works or raises a
  :class:`geo.errors.IcvError`; no other exception type escapes.
- The roads table's total length is the sum of the geodesic lengths of the
  kept ways' segments (pyproj, computed here independently): splitting and
  merging neither lose nor add length.
- Shuffling the ways (and nodes) of a document gives the same total length and
  the same set of pieces.
- Centerline km <= carriageway km; km clipped to a zone <= km of the whole network.
- Zone validation of any ring raises only ZoneError or returns a valid polygon
  with positive area.
- GCJ-02 -> WGS84 -> GCJ-02 (and back) round trips within 0.5 m inside China.

Example counts are kept modest (CI has two cores).
"""

from __future__ import annotations

import random
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pyproj import Geod
from shapely.geometry import Polygon

from geo import sources
from geo._osmxml import read_ways
from geo.errors import IcvError, ZoneError
from geo.gcj02 import gcj02_to_wgs84, wgs84_to_gcj02
from geo.roads import build_roads_table, parse_filter

GEOD = Geod(ellps="WGS84")
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CLASSES = ["motorway", "primary", "secondary", "tertiary", "residential", "service", "footway", "motorway_link"]
NAMES = [None, "曹安公路", "嘉松北路", "Test Road", "a&b <c>", "\"quoted\""]


# ---------------------------------------------------------------- random OSM documents

@st.composite
def osm_docs(draw: st.DrawFn) -> dict:
    """A random OSM road document: nodes on a small lattice near Anting and ways over them."""
    n_nodes = draw(st.integers(2, 25))
    # a lattice so that ways share nodes (junctions) and sometimes overlap
    cells = draw(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=n_nodes, max_size=n_nodes,
                          unique=True))
    nodes = {i + 1: (121.20 + 0.001 * x, 31.30 + 0.001 * y) for i, (x, y) in enumerate(cells)}
    ways = []
    for wid in range(1, draw(st.integers(1, 12)) + 1):
        refs = draw(st.lists(st.integers(1, n_nodes + 2), min_size=1, max_size=8))  # n+1, n+2: missing nodes
        tags = {"highway": draw(st.sampled_from(CLASSES))}
        name = draw(st.sampled_from(NAMES))
        if name:
            tags["name"] = name
        oneway = draw(st.sampled_from([None, "yes", "-1", "no"]))
        if oneway:
            tags["oneway"] = oneway
        if draw(st.booleans()) and draw(st.booleans()):
            tags["access"] = "private"
        ways.append((wid * 10, refs, tags))
    return {"nodes": nodes, "ways": ways}


def to_xml(doc: dict, order: list[int] | None = None, node_order: list[int] | None = None) -> str:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6">']
    for nid in node_order or list(doc["nodes"]):
        lon, lat = doc["nodes"][nid]
        parts.append(f'<node id="{nid}" lat="{lat:.7f}" lon="{lon:.7f}"/>')
    ways = doc["ways"] if order is None else [doc["ways"][i] for i in order]
    for wid, refs, tags in ways:
        nds = "".join(f'<nd ref="{r}"/>' for r in refs)
        tg = "".join(f"<tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in tags.items())
        parts.append(f'<way id="{wid}">{nds}{tg}</way>')
    parts.append("</osm>")
    return "\n".join(parts)


def expected_length_m(doc: dict, road_filter) -> float:
    """Independent total: geodesic length of each kept way's runs of present nodes (pyproj)."""
    total = 0.0
    for _, refs, tags in doc["ways"]:
        if not road_filter.accepts(tags):
            continue
        run: list[int] = []
        for r in [*refs, None]:
            if r is not None and r in doc["nodes"]:
                if not run or run[-1] != r:
                    run.append(r)
                continue
            if len(run) >= 2:
                lons, lats = zip(*(doc["nodes"][n] for n in run))
                total += GEOD.line_length(lons, lats)
            run = []
    return total


def _load(tmp_path: Path, text: str, name: str = "doc.osm", road_filter=None):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    ways, _ = read_ways(p)
    return build_roads_table(ways, road_filter or parse_filter("all-roads"))


def _canonical(roads) -> set:
    """Pieces as comparable values, independent of where a ring starts or a two-way piece runs."""
    out = set()
    for row, geom in zip(roads.itertuples(index=False), roads.geometry.values):
        seq = [tuple(round(c, 7) for c in xy) for xy in shapely.get_coordinates(geom)]
        variants = [seq] if row.oneway else [seq, seq[::-1]]
        if seq[0] == seq[-1]:  # a ring: any start
            variants = [v[i:-1] + v[:i] + [v[i]] for v in variants for i in range(len(v) - 1)]
        out.add((row.highway, row.name, bool(row.oneway), min(tuple(v) for v in variants),
                 tuple(sorted(row.osm_way_ids))))
    return out


@SETTINGS
@given(doc=osm_docs())
def test_random_osm_length_is_conserved(doc: dict, tmp_path: Path) -> None:
    flt = parse_filter("drive")
    roads = _load(tmp_path, to_xml(doc), road_filter=flt)
    assert roads["length_m"].sum() == pytest.approx(expected_length_m(doc, flt), rel=1e-9, abs=1e-6)
    assert (roads["length_m"] > 0).all()  # no zero-length piece
    assert set(roads["highway"]) <= set(flt.highway)


@SETTINGS
@given(doc=osm_docs(), seed=st.integers(0, 2**32 - 1))
def test_shuffled_ways_give_the_same_pieces(doc: dict, seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    order = list(range(len(doc["ways"])))
    rng.shuffle(order)
    node_order = list(doc["nodes"])
    rng.shuffle(node_order)
    a = _load(tmp_path, to_xml(doc), "a.osm")
    b = _load(tmp_path, to_xml(doc, order, node_order), "b.osm")
    assert a["length_m"].sum() == pytest.approx(b["length_m"].sum(), rel=1e-12, abs=1e-9)
    assert len(a) == len(b)
    assert _canonical(a) == _canonical(b)


# ---------------------------------------------------------------- mangled documents

MANGLES = ["truncate", "delete", "insert", "attr", "dup_attr", "nul", "entity"]


@SETTINGS
@given(doc=osm_docs(), how=st.lists(st.sampled_from(MANGLES), min_size=1, max_size=3),
       data=st.data())
def test_mangled_osm_raises_only_icv_errors(doc: dict, how: list[str], data: st.DataObject, tmp_path: Path) -> None:
    text = to_xml(doc)
    for m in how:
        pos = data.draw(st.integers(0, max(len(text) - 1, 0)))
        if m == "truncate":
            text = text[:pos]
        elif m == "delete":
            text = text[:pos] + text[pos + data.draw(st.integers(1, 40)):]
        elif m == "insert":
            text = text[:pos] + data.draw(st.sampled_from(["<", ">", "&", '"', "</way>", "<nd ref='x'/>", "\x00",
                                                          '<node id="7" lat="nan" lon="1e400"/>', "]]>",
                                                          '<way id="-1"><nd ref="1"/></way>'])) + text[pos:]
        elif m == "attr":
            text = text.replace(data.draw(st.sampled_from(['lat="', 'lon="', 'ref="', 'id="'])),
                                data.draw(st.sampled_from(['lat="x', 'lon="-', 'ref="1.5', 'id="', 'id="9e99'])), 1)
        elif m == "dup_attr":
            text = text.replace("<way ", '<way id="1" ', 1)
        elif m == "nul":
            text = text.replace(">", ">\x01", 1)
        elif m == "entity":
            text = text.replace('v="', 'v="&bogus;', 1)
    p = tmp_path / "mangled.osm"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        net = sources.load_network(p, road_filter=parse_filter("all-roads"))
    except IcvError as e:
        assert "\n" not in e.message and e.message
    else:
        assert len(net.roads) > 0 and np.isfinite(net.roads["length_m"]).all()


@SETTINGS
@given(blob=st.binary(max_size=400), suffix=st.sampled_from([".osm", ".osm.gz", ".osm.bz2", ".osm.pbf",
                                                               ".geojson", ".parquet"]))
def test_random_bytes_raise_only_icv_errors(blob: bytes, suffix: str, tmp_path: Path) -> None:
    p = tmp_path / f"blob{suffix}"
    p.write_bytes(blob)
    with pytest.raises(IcvError):
        sources.load_network(p)


# ---------------------------------------------------------------- zones and statistics

@st.composite
def rings(draw: st.DrawFn) -> list[tuple[float, float]]:
    """A random ring near the lattice: star-shaped (valid) or in random order (often self-intersecting)."""
    n = draw(st.integers(3, 12))
    cx, cy = 121.203, 31.303
    pts = []
    for _ in range(n):
        ang = draw(st.floats(0, 2 * np.pi))
        r = draw(st.floats(0.0005, 0.006))
        pts.append((ang, cx + r * np.cos(ang), cy + r * np.sin(ang)))
    if draw(st.booleans()):
        pts.sort()
    return [(x, y) for _, x, y in pts]


@SETTINGS
@given(ring=rings())
def test_zone_validation_raises_only_zone_errors(ring: list) -> None:
    from geo.zones import validate_zone_geometry

    poly = Polygon(ring)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = validate_zone_geometry(poly, where="random ring")
    except ZoneError as e:
        assert e.message.startswith("random ring")
    else:
        assert out.is_valid and out.area > 0 and out.geom_type in ("Polygon", "MultiPolygon")


@SETTINGS
@given(doc=osm_docs(), ring=rings())
def test_clipped_km_and_centerline_bounds(doc: dict, ring: list, tmp_path: Path) -> None:
    stats_mod = pytest.importorskip("geo.stats")
    roads = _load(tmp_path, to_xml(doc), road_filter=parse_filter("drive"))
    assume(len(roads) > 0)
    zone = shapely.make_valid(Polygon(ring))
    zone = shapely.union_all([g for g in shapely.get_parts(zone) if g.geom_type == "Polygon"])
    assume(not zone.is_empty and zone.area > 0)
    whole = stats_mod.road_stats(roads, None)
    clipped = stats_mod.road_stats(roads, zone, zone_name="random")
    tol = 1e-6
    w_cw, w_cl = whole.value("carriageway_km"), whole.value("centerline_km")
    c_cw, c_cl = clipped.value("carriageway_km"), clipped.value("centerline_km")
    assert 0 <= w_cl <= w_cw + tol
    assert 0 <= c_cl <= c_cw + tol
    assert c_cw <= w_cw + tol
    assert c_cl <= w_cl + tol
    # whole network in UTM vs geodesic: within 0.1 % (the stats module's own claim)
    assert w_cw == pytest.approx(roads["length_m"].sum() / 1000, rel=1e-3)


# ---------------------------------------------------------------- GCJ-02

china = st.tuples(st.floats(73.7, 135.0), st.floats(18.0, 53.5))


@settings(max_examples=200, deadline=None)
@given(pt=china)
def test_gcj02_round_trip_within_half_a_metre(pt: tuple[float, float]) -> None:
    lon, lat = pt
    wl, wa = gcj02_to_wgs84(lon, lat)
    gl, ga = wgs84_to_gcj02(wl, wa)
    assert GEOD.inv(lon, lat, float(gl), float(ga))[2] < 0.5
    # and from the WGS84 side
    gl2, ga2 = wgs84_to_gcj02(lon, lat)
    wl2, wa2 = gcj02_to_wgs84(gl2, ga2)
    assert GEOD.inv(lon, lat, float(wl2), float(wa2))[2] < 0.5


@settings(max_examples=50, deadline=None)
@given(pts=st.lists(china, min_size=1, max_size=50))
def test_gcj02_vectorized_equals_pointwise(pts: list[tuple[float, float]]) -> None:
    lon, lat = map(np.array, zip(*pts))
    vl, va = gcj02_to_wgs84(lon, lat)
    for i, (x, y) in enumerate(pts):
        sl, sa = gcj02_to_wgs84(x, y)
        assert float(sl) == pytest.approx(vl[i], abs=1e-9) and float(sa) == pytest.approx(va[i], abs=1e-9)
