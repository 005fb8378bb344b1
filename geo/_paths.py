"""Where the project's shipped data and its default cache live."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (``geo`` is installed in editable mode beside ``data/``).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
ZONES_DIR = DATA_DIR / "zones"
MAPS_DIR = PROJECT_ROOT / "maps"


def cache_dir() -> Path:
    """The cache folder: ``$ICV_CACHE_DIR`` or ``./cache``."""
    return Path(os.environ.get("ICV_CACHE_DIR", "cache"))


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository (``$ICV_SHARED_DATA`` overrides)."""
    env = os.environ.get("ICV_SHARED_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"
