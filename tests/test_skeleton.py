"""The scgraph-data main-road skeleton as a road source."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest
import shapely
from pyproj import Geod

from geo import _skeleton, sources
from geo.errors import InputError
from geo.roads import COLUMNS
from geo.zones import load_zone

pytest.importorskip("scgraph_data", reason="the skeleton source needs the optional extra icv[skeleton]")
GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def jiading_skeleton():
    zone = load_zone("jiading")
    return zone, sources.load_network("skeleton", zone=zone)


def _independent_edges() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Parse the package file another way: JSON after quoting the dict keys."""
    text = _skeleton.skeleton_file().read_text(encoding="utf-8")
    nodes = json.loads(re.search(r"^nodes=(\[.*\])$", text, re.M).group(1))
    graph = json.loads(re.sub(r"(\d+):", r'"\1":', re.search(r"^graph=(\[.*\])$", text, re.M).group(1)))
    latlon = np.array(nodes)
    edges = [(i, int(j)) for i, adj in enumerate(graph) for j in adj if i < int(j)]
    return latlon, edges


def test_length_inside_jiading_is_about_367_km(jiading_skeleton) -> None:
    zone, net = jiading_skeleton
    roads = net.roads
    # our pieces, clipped to the zone, measured with pyproj.Geod
    inside = shapely.intersection(roads.geometry.values, zone.geometry)
    ours = sum(GEOD.geometry_length(g) for g in inside) / 1000
    # the package's edges parsed independently, each straight edge clipped and measured the same way
    latlon, edges = _independent_edges()
    minx, miny, maxx, maxy = zone.geometry.bounds
    lines = [shapely.LineString([latlon[i][::-1], latlon[j][::-1]]) for i, j in edges
             if minx - 0.1 < latlon[i][1] < maxx + 0.1 and miny - 0.1 < latlon[i][0] < maxy + 0.1]
    theirs = sum(GEOD.geometry_length(g) for g in shapely.intersection(lines, zone.geometry)) / 1000
    assert ours == pytest.approx(theirs, abs=0.05)
    assert 360 < ours < 375  # about 367 km


def test_roads_table_schema_and_provenance(jiading_skeleton) -> None:
    _, net = jiading_skeleton
    roads = net.roads
    assert list(roads.columns) == COLUMNS and roads.crs.to_epsg() == 4326
    assert set(roads["highway"]) == {_skeleton.SKELETON_HIGHWAY} and not roads["oneway"].any()
    lengths = np.array([GEOD.geometry_length(g) for g in roads.geometry.values])
    assert np.allclose(roads["length_m"].to_numpy(), lengths, rtol=1e-9)
    assert all(all(w < 0 for w in ids) for ids in roads["osm_way_ids"])  # not OSM ids
    prov = net.provenance
    assert prov.source_kind == "skeleton" and prov.zone == "jiading"
    assert any("coarse main-road skeleton" in n for n in prov.notes)
    # pieces run between junctions: no node of degree 2 joins two pieces
    ends = np.concatenate([roads["u"].to_numpy(), roads["v"].to_numpy()])
    _, counts = np.unique(ends, return_counts=True)
    assert (counts != 2).sum() > 0 and len(roads) < 600


def test_missing_package_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "scgraph_data" else real(name, *a))
    with pytest.raises(InputError, match=r"icv\[skeleton\]"):
        _skeleton.load_skeleton(load_zone("jiading"))


def test_no_zone_is_refused() -> None:
    with pytest.raises(InputError, match="zone"):
        _skeleton.load_skeleton(None)


def test_skeleton_carries_a_simulated_fleet(jiading_skeleton, tmp_path) -> None:
    from geo import fleet
    from geo.simulate import SimParams, simulate_fleet, write_simulation

    zone, net = jiading_skeleton
    sim = simulate_fleet(net.roads, SimParams(vehicles=4, enterprises=2, trips=1, seed=2))
    log = tmp_path / "sk.parquet"
    write_simulation(sim, log)
    res = fleet.compute_mileage(log, net.roads, zone=zone)
    assert res.on_network_km == pytest.approx(sim.truth_km, rel=0.02)
