"""The project's own cache: a GeoParquet roads table with a JSON sidecar.

The sidecar holds the provenance and the sha256 of the Parquet file; a cache
whose checksum does not match is never read as data. Writes are atomic and
serialized by a lock file, so two ``icv pull`` runs at once cannot corrupt it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import shapely
from shapely.geometry.base import BaseGeometry

from ._atomic import atomic_paths, remove_stale_temps
from .errors import CacheError
from .provenance import Provenance, sha256_file

SCHEMA = 1


def cache_key(zone: str, filter_label: str, as_of: str | None = None) -> str:
    """File stem of a cached network: safe characters only (no path escapes).

    ``as_of`` (``YYYY-MM-DD``) keys a network as it was at that date apart from the current one.
    """
    raw = f"roads-{zone}-{filter_label}" + (f"-asof-{as_of}" if as_of else "")
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
def _lock(cache_dir: Path, key: str, shared: bool = False) -> Iterator[None]:
    """A lock on ``.KEY.lock`` (filelock: flock on POSIX, msvcrt locking on Windows).

    A reader (``shared``) of a cache folder it cannot write goes without one:
    nothing can write there either. A lock path that is not a regular file (a
    FIFO, a link to a device) is refused rather than opened, which could hang.
    """
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(f"cannot create the cache folder ({e.strerror or e})", where=str(cache_dir),
                         hint="give a writable --cache-dir (or ICV_CACHE_DIR)") from e
    lock_path = cache_dir / f".{key}.lock"
    try:
        st = os.lstat(lock_path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise CacheError("the cache's lock file is not a regular file (a pipe, a device or a link)",
                         where=str(lock_path), hint="remove it; icv makes it again")
    if shared and st is None and not os.access(cache_dir, os.W_OK):
        yield
        return
    import warnings

    with warnings.catch_warnings():  # off Windows without fcntl it falls back to a soft lock, and says so
        warnings.simplefilter("ignore")
        from filelock import FileLock

    lock = FileLock(str(lock_path))
    try:
        lock.acquire()
    except OSError as e:
        if shared and e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            yield
            return
        raise CacheError(f"cannot write the cache's lock file ({e.strerror or e})", where=str(lock_path),
                         hint="give a writable --cache-dir (or ICV_CACHE_DIR)") from e
    try:
        yield
    finally:
        lock.release()


def _regular_file(path: Path, what: str) -> None:
    """Refuse a cache file that is not a regular file (a FIFO would hang, /dev/zero never ends)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise CacheError(f"cannot read the {what} ({e.strerror or e})", where=str(path),
                         hint="run `icv pull --force` to fetch it again") from e
    if not stat.S_ISREG(st.st_mode):
        raise CacheError(f"the {what} is not a regular file (a pipe, a device or a link to one)", where=str(path),
                         hint="remove it and run `icv pull --force` to fetch it again")


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
        _regular_file(side, "cache sidecar")
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError, CacheError):
        return None
    return data if isinstance(data, dict) else None


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
    with _lock(cache_dir, key, shared=True):
        _regular_file(side, "cache sidecar")
        _regular_file(data, "cached data")
        try:
            sidecar = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CacheError("the cache sidecar is unreadable", where=str(side),
                             hint="run `icv pull --force` to fetch it again") from e
        if not isinstance(sidecar, dict):
            raise CacheError(f"the cache sidecar is JSON but not an object (a {type(sidecar).__name__})",
                             where=str(side), hint="run `icv pull --force` to fetch it again")
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
