"""Synthetic OSM XML for tests and benchmarks: a street grid of any size."""

from __future__ import annotations

from pathlib import Path


def write_grid_osm(path: Path, n: int, lon0: float = 121.19, lat0: float = 31.29, step: float = 0.0001) -> None:
    """An n x n street grid near Anting: n named residential rows and n tertiary columns.

    It has 2·n·(n−1) pieces and (n−2)² four-way plus 4·(n−2) three-way junctions.
    """
    with open(path, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6">\n')
        for i in range(n):
            f.writelines(f'<node id="{i * n + j + 1}" lat="{lat0 + i * step:.7f}" lon="{lon0 + j * step:.7f}"/>\n'
                         for j in range(n))
        for i in range(n):
            f.write(f'<way id="{i + 1}">' + "".join(f'<nd ref="{i * n + j + 1}"/>' for j in range(n))
                    + f'<tag k="highway" v="residential"/><tag k="name" v="横{i}路"/></way>\n')
        for j in range(n):
            f.write(f'<way id="{n + j + 1}">' + "".join(f'<nd ref="{i * n + j + 1}"/>' for i in range(n))
                    + '<tag k="highway" v="tertiary"/></way>\n')
        f.write("</osm>\n")
