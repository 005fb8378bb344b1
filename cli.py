"""``icv``: the command line of the ICV test-road analyzer.

This module only parses options, calls :mod:`geo`, and renders output. Errors
from :mod:`geo.errors` become one line on stderr and the error's exit code;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from geo import __version__
from geo._atomic import write_text
from geo._format import FORMATS, render
from geo.errors import IcvError

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class IcvGroup(click.Group):
    """A click group that turns :class:`geo.errors.IcvError` into one clear line."""

    def invoke(self, ctx: click.Context) -> Any:
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
            click.echo(f"icv: internal error: {type(e).__name__}: {e}. Rerun with --debug for the "
                       "traceback and report it.", err=True)
            ctx.exit(EXIT_INTERNAL)


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool(root.obj and root.obj.get("debug"))


@click.group(cls=IcvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="icv")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Check and map the ICV test roads of Jiading (Shanghai) from OpenStreetMap.

    Data © OpenStreetMap contributors (ODbL).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# ---------------------------------------------------------------- shared options

def output_options(f: Callable) -> Callable:
    """``--format`` and ``-o/--output``, as every data-printing command takes them."""
    f = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write to FILE (atomically) instead of stdout.")(f)
    f = click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                     help="Output format.")(f)
    return f


def emit(records: Sequence[Mapping[str, Any]], fmt: str, output: Path | None, *,
         columns: Sequence[str] | None = None, meta: Mapping[str, Any] | None = None,
         title: str | None = None) -> None:
    """Render records and print them, or write them to ``output`` atomically."""
    text = render(records, fmt, columns=columns, meta=meta, title=title)
    emit_text(text, output)


def emit_text(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
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
                     help="Test zone: a shipped zone name or a GeoJSON/GPKG file."),
        click.option("--overpass-url", envvar="ICV_OVERPASS_URL", default=None,
                     help="Overpass API base URL (env ICV_OVERPASS_URL)."),
        click.option("--timeout", "overpass_timeout", type=int, default=180, show_default=True,
                     help="Overpass timeout, seconds."),
        click.option("--memory", "overpass_memory", type=int, default=None,
                     help="Overpass memory limit, bytes."),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="ICV_CACHE_DIR",
                     default=None, help="Cache folder (env ICV_CACHE_DIR; default ./cache)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def load_from_options(**kw: Any):
    """Load the zone and the network that :func:`network_options` describe."""
    from geo import sources, zones
    from geo.roads import parse_filter

    road_filter = parse_filter(kw["filter_name"], kw.get("highway"), kw.get("include_private", False))
    zone = zones.load_zone(kw["zone"])
    net = sources.load_network(
        kw["source"], zone=zone, road_filter=road_filter, overpass_url=kw.get("overpass_url"),
        timeout=kw.get("overpass_timeout"), memory=kw.get("overpass_memory"), cache_dir=kw.get("cache_dir"),
        progress=True,
    )
    return zone, net


def _pop_network_kw(kw: dict[str, Any]) -> dict[str, Any]:
    keys = ["source", "filter_name", "highway", "include_private", "zone", "overpass_url",
            "overpass_timeout", "overpass_memory", "cache_dir"]
    return {k: kw.pop(k) for k in keys if k in kw}


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
@click.option("--force", is_flag=True, help="Pull again even when the cache holds this network.")
def pull(force: bool, **kw: Any) -> None:
    """Pull the road network of the zone (Overpass or a file) into the cache."""
    from geo import sources, zones
    from geo.roads import parse_filter

    road_filter = parse_filter(kw["filter_name"], kw.get("highway"), kw.get("include_private", False))
    zone = zones.load_zone(kw["zone"])
    src = kw["source"] if kw["source"] != "cache" else "overpass"
    path = sources.pull_to_cache(src, zone=zone, road_filter=road_filter, overpass_url=kw.get("overpass_url"),
                                 timeout=kw.get("overpass_timeout"), memory=kw.get("overpass_memory"),
                                 cache_dir=kw.get("cache_dir"), force=force, progress=True)
    click.echo(f"cached {path}")


@cli.command()
@with_network
@output_options
@click.option("--by", type=click.Choice(["highway", "none"]), default="highway", show_default=True,
              help="Group rows by highway class.")
def roads(zone: Any, net: Any, fmt: str, output: Path | None, by: str) -> None:
    """Rows, km and classes of the loaded road network (before clipping to the zone)."""
    from geo import sources

    records = sources.summarize(net.roads, by=None if by == "none" else by)
    emit(records, fmt, output, meta=net.provenance.to_dict(),
         title=f"Road network: {net.provenance.source_kind} {net.provenance.source}")


# ---------------------------------------------------------------- zone commands
# (zones: see geo.zones)


# ---------------------------------------------------------------- statistics and comparison
# (stats, compare, report: see geo.stats and geo.reported)


# ---------------------------------------------------------------- maps
# (map coverage, map mileage: see geo.maps)


# ---------------------------------------------------------------- fleet
# (fleet simulate, fleet mileage: see geo.fleet)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``icv`` command."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="icv")
    except KeyboardInterrupt:  # raised before a command started
        click.echo("icv: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    main()
