"""Self-contained map HTML: inline the scripts and stylesheets folium's template loads.

Where the files come from
-------------------------
From the npm registry, installed once at set-up into a cache folder outside the
repository (nothing is copied into git)::

    python -m geo._offline install            # = the npm command below
    npm install --prefix ~/.cache/icv/web-assets --no-save --no-audit --no-fund --ignore-scripts \\
        --no-package-lock leaflet@1.9.3 jquery@3.7.1 bootstrap@5.2.2 \\
        @fortawesome/fontawesome-free@6.2.0 drmonty-leaflet-awesome-markers@2.0.2 jquery-ui-dist@1.12.1

The folder is ``$ICV_WEB_ASSETS`` or ``$XDG_CACHE_HOME/icv/web-assets``
(``~/.cache/icv/web-assets``). npm was chosen over PyPI because npm carries the
exact files and versions folium 0.20's template points at (its CDN URLs are npm
paths: ``cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js``), whereas PyPI
packages that bundle Leaflet carry other versions or webpacked bundles.

Each known CDN URL maps to ``(npm package, version, file)``; the installed
package's ``package.json`` version must equal the pinned one, so an offline
map runs exactly the code the online one would. ``url(...)`` references in
stylesheets (Leaflet's layer-control icons, Font Awesome's fonts) become
``data:`` URIs.

Two stylesheets of folium's default template exist on no registry at the
template's version: Bootstrap 3.0.0's ``bootstrap-glyphicons.css`` (an early
CDN-only file) and folium's ``leaflet.awesome.rotate.min.css`` (served from
its GitHub tree, not shipped in its wheel). Both only style marker icons.
icv's own maps load Leaflet alone (they draw no markers and use no Bootstrap),
so they never reference them; :func:`inline_assets` drops these two only when
asked (``drop=MARKER_ICON_CSS``) and otherwise refuses a map that needs them.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import OutputError


@dataclass(frozen=True)
class Asset:
    """A file of an npm package that a CDN URL of folium's template serves."""

    package: str
    version: str
    file: str

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"


#: CDN URL (as folium 0.20 writes it) -> npm file.
ASSETS: dict[str, Asset] = {
    "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js": Asset("leaflet", "1.9.3", "dist/leaflet.js"),
    "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css": Asset("leaflet", "1.9.3", "dist/leaflet.css"),
    "https://code.jquery.com/jquery-3.7.1.min.js": Asset("jquery", "3.7.1", "dist/jquery.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/js/bootstrap.bundle.min.js":
        Asset("bootstrap", "5.2.2", "dist/js/bootstrap.bundle.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/css/bootstrap.min.css":
        Asset("bootstrap", "5.2.2", "dist/css/bootstrap.min.css"),
    "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@6.2.0/css/all.min.css":
        Asset("@fortawesome/fontawesome-free", "6.2.0", "css/all.min.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/Leaflet.awesome-markers/2.0.2/leaflet.awesome-markers.js":
        Asset("drmonty-leaflet-awesome-markers", "2.0.2", "js/leaflet.awesome-markers.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/Leaflet.awesome-markers/2.0.2/leaflet.awesome-markers.css":
        Asset("drmonty-leaflet-awesome-markers", "2.0.2", "css/leaflet.awesome-markers.css"),
    # categorical legends of GeoDataFrame.explore() (branca) load jQuery UI
    "https://code.jquery.com/ui/1.12.1/jquery-ui.js": Asset("jquery-ui-dist", "1.12.1", "jquery-ui.js"),
}

#: Marker-icon stylesheets of folium's template that no registry carries (see the module docstring).
MARKER_ICON_CSS = frozenset({
    "https://netdna.bootstrapcdn.com/bootstrap/3.0.0/css/bootstrap-glyphicons.css",
    "https://cdn.jsdelivr.net/gh/python-visualization/folium/folium/templates/leaflet.awesome.rotate.min.css",
})

#: The npm packages :func:`install` puts into the asset folder.
PACKAGES: tuple[str, ...] = tuple(dict.fromkeys(a.spec for a in ASSETS.values()))

# one pass over both, so that text inside an inlined file is never rewritten
_EXTERNAL_RE = re.compile(r'<script\s+src="(?P<js>[^"]+)"\s*>\s*</script>'
                          r'|<link\s+rel="stylesheet"\s+href="(?P<css>[^"]+)"\s*/?>', re.I)
_CSS_URL_RE = re.compile(r"url\(\s*(?P<q>['\"]?)(?P<ref>[^'\")]+)(?P=q)\s*\)")


def asset_dir() -> Path:
    """The asset folder: ``$ICV_WEB_ASSETS`` or ``$XDG_CACHE_HOME/icv/web-assets``."""
    env = os.environ.get("ICV_WEB_ASSETS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "icv" / "web-assets"


def _install_hint(root: Path) -> str:
    return f"install them once with `python -m geo._offline install` (npm, into {root})"


def asset_path(asset: Asset, root: Path | None = None) -> Path:
    """The installed file of ``asset``, checked against the pinned version.

    Raises
    ------
    OutputError
        If the package is not installed in ``root`` or has another version.
    """
    root = root or asset_dir()
    pkg = root / "node_modules" / asset.package
    try:
        version = json.loads((pkg / "package.json").read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        raise OutputError(f"the offline map needs npm package {asset.spec}, which is not installed",
                          where=str(root), hint=_install_hint(root)) from None
    if version != asset.version:
        raise OutputError(f"npm package {asset.package} is {version}, the map template needs {asset.version}",
                          where=str(root), hint=_install_hint(root))
    f = pkg / asset.file
    if not f.is_file():
        raise OutputError(f"{asset.spec} has no file {asset.file}", where=str(root), hint=_install_hint(root))
    return f


def _data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or {
        ".woff2": "font/woff2", ".woff": "font/woff", ".ttf": "font/ttf"}.get(path.suffix, "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _inline_css_urls(css: str, base: Path) -> str:
    """Replace relative ``url(...)`` references with ``data:`` URIs of the installed files."""
    def repl(m: re.Match[str]) -> str:
        ref = m.group("ref").strip()
        if ref.startswith(("data:", "#")):
            return m.group(0)
        if re.match(r"^[a-z]+:", ref, re.I) or ref.startswith("//"):
            raise OutputError(f"stylesheet {base.name} loads {ref}, which an offline map cannot fetch",
                              hint="use a stylesheet without remote references")
        f = (base.parent / ref.split("?")[0].split("#")[0]).resolve()
        if not f.is_file():
            raise OutputError(f"stylesheet {base.name} references {ref}, not found in the installed package",
                              where=str(base.parent), hint=_install_hint(asset_dir()))
        return f"url({_data_uri(f)})"
    return _CSS_URL_RE.sub(repl, css)


def _script_text(js: str) -> str:
    # a literal "</script" inside inlined code would end the element early
    return re.sub(r"</(script)", r"<\\/\1", js, flags=re.I)


def inline_assets(html: str, *, root: Path | None = None, drop: Iterable[str] = ()) -> str:
    """Inline every ``<script src>`` and stylesheet ``<link>`` of a folium page.

    Parameters
    ----------
    html
        A rendered folium page.
    root
        The asset folder (:func:`asset_dir` when None).
    drop
        URLs to remove instead of inlining (e.g. :data:`MARKER_ICON_CSS`).

    Returns
    -------
    str
        The page with no external script or stylesheet reference.

    Raises
    ------
    OutputError
        For a URL that maps to no installed npm file, or a missing install.
    """
    root = root or asset_dir()
    dropped = set(drop)

    def resolve(url: str) -> Path:
        asset = ASSETS.get(url)
        if asset is None:
            raise OutputError(f"the map loads {url}, which icv cannot inline",
                              hint="leave out --offline, or add the file to geo._offline.ASSETS")
        return asset_path(asset, root)

    def replace(m: re.Match[str]) -> str:
        url = m.group("js") or m.group("css")
        if url in dropped:
            return ""
        f = resolve(url)
        if m.group("js"):
            return f"<script>{_script_text(f.read_text(encoding='utf-8'))}</script>"
        css = _inline_css_urls(f.read_text(encoding="utf-8"), f)
        css = re.sub(r"</(style)", r"<\\/\1", css, flags=re.I)
        return f"<style>{css}</style>"

    return _EXTERNAL_RE.sub(replace, html)


def external_references(html: str) -> list[str]:
    """``src``/``href`` values of script and stylesheet elements that point outside the page."""
    return [m.group("js") or m.group("css") for m in _EXTERNAL_RE.finditer(html)]


def install(root: Path | None = None, npm: str | None = None) -> Path:
    """Install :data:`PACKAGES` from the npm registry into ``root`` (set-up step, needs npm).

    Returns
    -------
    Path
        The asset folder.
    """
    root = root or asset_dir()
    npm = npm or shutil.which("npm")
    if not npm:
        raise OutputError("npm is not installed", hint="install Node.js and npm (apt-get install -y npm)")
    root.mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--prefix", str(root), "--no-save", "--no-audit", "--no-fund",
           "--no-package-lock", "--ignore-scripts", *PACKAGES]
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        raise OutputError(f"npm install failed (exit {done.returncode})", where=str(root),
                          hint="check the npm registry is reachable")
    for a in ASSETS.values():
        asset_path(a, root)
    return root


def main(argv: list[str] | None = None) -> int:
    """``python -m geo._offline install [DIR]`` or ``python -m geo._offline check``."""
    args = list(sys.argv[1:] if argv is None else argv)
    cmd = args[0] if args else "check"
    root = Path(args[1]) if len(args) > 1 else None
    try:
        if cmd == "install":
            print(f"installed {' '.join(PACKAGES)} into {install(root)}")
        elif cmd == "check":
            root = root or asset_dir()
            for a in ASSETS.values():
                asset_path(a, root)
            print(f"offline map assets OK in {root}")
        else:
            print("usage: python -m geo._offline install|check [DIR]", file=sys.stderr)
            return 2
    except OutputError as e:
        print(f"icv: error: {e.message}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
