"""Street names and route refs, normalized the same way everywhere.

Road statistics, maps and the fleet work compare names and refs of OSM ways;
they all go through these functions so that "the same street" means the same.

Names
-----
1. Unicode NFKC: full-width Latin letters, digits and punctuation become their
   ordinary forms (``Ａ路`` -> ``A路``, ``；`` -> ``;``, the ideographic space
   U+3000 -> a space). Chinese characters are unchanged.
2. ``;`` separates several names in one tag (OSM's convention): the tag is split
   and each part normalized on its own.
3. Whitespace is collapsed to one space and stripped at both ends; empty parts
   are dropped, repeated parts kept once (first order kept).
4. Letter case is kept: ``Caoan Highway`` and ``caoan highway`` stay apart.

The street name of a way is its ``name`` tag, else its ``name:zh`` tag. The
``name:en`` tag is never mixed in: it is kept apart as the English label (maps
show it beside the name), because many ways carry only a Chinese ``name`` and
counting an English label too would count one street twice.

Refs
----
``ref`` tags (``G2``, ``G1503;S5``) are NFKC-normalized, split at ``;``, upper-cased
and stripped of all whitespace (``g 2`` -> ``G2``).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

_SPACE = re.compile(r"\s+")


def _text(value: Any) -> str | None:
    """``value`` as a string, or ``None`` for missing values (None, NaN, pandas NA)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if not isinstance(value, str):
        try:
            if pd.isna(value):
                return None
        except (TypeError, ValueError):
            pass
        value = str(value)
    return value


@functools.lru_cache(maxsize=65536)
def _normalize(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def normalize_name(value: Any) -> str | None:
    """One name, normalized (NFKC, whitespace collapsed and stripped); ``None`` if empty.

    Does not split at ``;`` (see :func:`split_names`).

    Examples
    --------
    >>> normalize_name("　Ａ路  ")
    'A路'
    >>> normalize_name("  ") is None
    True
    """
    text = _text(value)
    if text is None:
        return None
    return _normalize(text) or None


@functools.lru_cache(maxsize=65536)
def _split(text: str) -> tuple[str, ...]:
    parts = (_normalize(p) for p in unicodedata.normalize("NFKC", text).split(";"))
    return tuple(dict.fromkeys(p for p in parts if p))


def split_names(value: Any) -> tuple[str, ...]:
    """The normalized names of one tag value, split at ``;``.

    Examples
    --------
    >>> split_names("华江路；华江支路")
    ('华江路', '华江支路')
    >>> split_names(None)
    ()
    """
    text = _text(value)
    return _split(text) if text is not None else ()


def street_names(name: Any, name_zh: Any = None) -> tuple[str, ...]:
    """The street names of a way: its ``name`` tag, else its ``name:zh`` tag.

    Examples
    --------
    >>> street_names(None, " 曹安公路 ")
    ('曹安公路',)
    """
    return split_names(name) or split_names(name_zh)


def english_label(name_en: Any) -> str | None:
    """The English label (``name:en``), normalized; several names joined by ``"; "``."""
    names = split_names(name_en)
    return "; ".join(names) if names else None


@functools.lru_cache(maxsize=65536)
def _split_refs(text: str) -> tuple[str, ...]:
    parts = (_SPACE.sub("", p).upper() for p in unicodedata.normalize("NFKC", text).split(";"))
    return tuple(dict.fromkeys(p for p in parts if p))


def split_refs(value: Any) -> tuple[str, ...]:
    """The normalized route refs of a ``ref`` tag.

    Examples
    --------
    >>> split_refs("G2; g1503")
    ('G2', 'G1503')
    """
    text = _text(value)
    return _split_refs(text) if text is not None else ()


def _distinct(values: Iterable[Any]) -> tuple[np.ndarray, list[Any]]:
    """Codes and distinct values of a column (missing values become one NaN value)."""
    codes, uniq = pd.factorize(pd.Series(list(values) if not hasattr(values, "dtype") else values,
                                         dtype=object), use_na_sentinel=False)
    return codes, list(uniq)


def _object_array(items: list[Any]) -> np.ndarray:
    return np.fromiter(items, dtype=object, count=len(items))


def street_names_of(names: Iterable[Any], names_zh: Iterable[Any]) -> np.ndarray:
    """:func:`street_names` over two parallel columns (e.g. ``roads["name"]``, ``roads["name_zh"]``).

    Returns an object array of tuples; each distinct pair of values is normalized once.
    """
    ca, ua = _distinct(names)
    cb, ub = _distinct(names_zh)
    pair, inverse = np.unique(ca.astype(np.int64) * max(len(ub), 1) + cb, return_inverse=True)
    n_b = max(len(ub), 1)
    done = _object_array([street_names(ua[p // n_b], ub[p % n_b]) for p in pair])
    return done[inverse] if len(pair) else _object_array([])


def refs_of(refs: Iterable[Any]) -> np.ndarray:
    """:func:`split_refs` over a column (object array of tuples; each distinct value split once)."""
    codes, uniq = _distinct(refs)
    done = _object_array([split_refs(u) for u in uniq])
    return done[codes] if len(codes) else _object_array([])


def english_labels_of(names_en: Iterable[Any]) -> np.ndarray:
    """:func:`english_label` over a column (object array)."""
    codes, uniq = _distinct(names_en)
    done = _object_array([english_label(u) for u in uniq])
    return done[codes] if len(codes) else _object_array([])
