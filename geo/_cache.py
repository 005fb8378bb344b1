"""The project's own cache: a GeoParquet roads table with a JSON sidecar.

The sidecar holds the provenance and the sha256 of the Parquet file; a cache
whose checksum does not match is never read as data. Writes are atomic and
serialized by a lock file, so two ``icv pull`` runs at once cannot corrupt it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import shapely
from shapely.geometry.base import BaseGeometry

from ._atomic import atomic_paths, remove_stale_temps
from .errors import CacheError
from .provenance import Provenance, sha256_file

SCHEMA = 1


def cache_key(zone: str, filter_label: str) -> str:
    """File stem of a cached network: safe characters only (no path escapes)."""
    raw = f"roads-{zone}-{filter_label}"
    key = re.sub(r"[^A-Za-z0-9_.+=,-]", "_", raw).replace("..", "_")
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]
    if len(key) > 160:  # file names stop at 255 bytes: shorten, and keep distinct names distinct
        key = key[:140] + "-" + digest
    elif key != raw:  # 嘉定 and 宝山 both sanitize to "__": keep them apart
        key += "-" + digest
    return key


def zone_fingerprint(geometry: BaseGeometry) -> str:
    """sha256 of a zone outline (WKB): a cache entry belongs to one outline, not just one name."""
    return hashlib.sha256(shapely.to_wkb(shapely.normalize(geometry), hex=False)).hexdigest()


def cache_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    return cache_dir / f"{key}.parquet", cache_dir / f"{key}.json"


@contextlib.contextmanager
def _lock(cache_dir: Path, key: str) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    # filelock: flock on POSIX, msvcrt locking on Windows (fcntl does not exist there)
    import warnings

    with warnings.catch_warnings():  # off Windows without fcntl it falls back to a soft lock, and says so
        warnings.simplefilter("ignore")
        from filelock import FileLock

    with FileLock(str(cache_dir / f".{key}.lock")):
        yield


def write_cache(roads: gpd.GeoDataFrame, provenance: Provenance, cache_dir: Path, key: str,
                zone_sha256: str | None = None) -> Path:
    """Write the roads table and its sidecar atomically; returns the Parquet path.

    ``zone_sha256`` (:func:`zone_fingerprint`) ties the entry to the outline it was pulled for.
    """
    data, side = cache_paths(cache_dir, key)
    with _lock(cache_dir, key):
        # the sidecar is renamed first: a data file never stands without a sidecar; both renames
        # happen with Ctrl-C held back, and a SIGKILL between them leaves a checksum mismatch
        with atomic_paths(side, data) as (tmp_side, tmp_data):
            roads.to_parquet(tmp_data, index=False)
            digest = sha256_file(tmp_data)
            sidecar = {"schema": SCHEMA, "sha256": digest, "rows": int(len(roads)), "zone_sha256": zone_sha256,
                       "provenance": provenance.to_dict()}
            with open(tmp_side, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(sidecar, ensure_ascii=False, indent=2))
                fh.flush()
                os.fsync(fh.fileno())
    return data


def read_sidecar(cache_dir: Path, key: str) -> dict | None:
    """The sidecar of a cache entry, or None when it is missing or unreadable."""
    side = cache_paths(cache_dir, key)[1]
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_cache(cache_dir: Path, key: str, zone_sha256: str | None = None) -> tuple[gpd.GeoDataFrame, Provenance]:
    """Read a cached network, verifying its checksum (and its zone outline when given).

    Raises
    ------
    CacheError
        If the cache is missing, its sidecar is unreadable, the data does not
        match the sidecar's checksum, or it was pulled for another outline.
    """
    data, side = cache_paths(cache_dir, key)
    if not data.exists() or not side.exists():
        raise CacheError(f"no cached network {key!r} in {cache_dir}",
                         hint="run `icv pull` first, or pass --source FILE (.osm, .osm.pbf, .geojson)")
    with _lock(cache_dir, key):
        try:
            sidecar = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CacheError("the cache sidecar is unreadable", where=str(side),
                             hint="run `icv pull --force` to fetch it again") from e
        if zone_sha256 and sidecar.get("zone_sha256") not in (None, zone_sha256):
            raise CacheError("the cached network was pulled for another outline of a zone with this name",
                             where=str(data), hint="run `icv pull --force` for this zone, or rename the zone file")
        digest = sha256_file(data)
        if sidecar.get("sha256") != digest:
            raise CacheError("the cached data does not match its checksum (corrupted or half-written)",
                             where=str(data), hint="run `icv pull --force` to fetch it again")
        try:
            roads = gpd.read_parquet(data)
        except Exception as e:
            raise CacheError(f"the cached data is unreadable ({e})", where=str(data),
                             hint="run `icv pull --force` to fetch it again") from e
    roads["osm_way_ids"] = roads["osm_way_ids"].map(lambda a: [int(x) for x in a])
    prov = Provenance.from_dict(sidecar.get("provenance", {}))
    return roads, prov


def cache_exists(cache_dir: Path, key: str) -> bool:
    return all(p.exists() for p in cache_paths(cache_dir, key))


def remove_stale_temp(cache_dir: Path) -> None:
    """Remove temporary files killed runs left behind (they are never read).

    Only files of writers that no longer run are removed (see
    :func:`geo._atomic.remove_stale_temps`), so a concurrent pull is safe.
    """
    if cache_dir.is_dir():
        remove_stale_temps(cache_dir)
