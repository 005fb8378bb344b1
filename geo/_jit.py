"""Compiled kernels of the fleet matcher: numba's ``njit``, cached on disk.

The HMM path does per fix a handful of small loops (a grid cell's sub-segments, a
state's incoming transitions, a route's pieces) that numpy can only express as
dozens of whole-array passes with temporaries. Those loops are compiled with numba
(machine code from LLVM, no build step; wheels for Windows, macOS and Linux).

``cache=True`` writes the machine code beside the module (or, where that folder is
read-only, to numba's user cache), so only the very first call on a machine pays
for compiling; ``nogil=True`` lets the kernels run beside other threads. No
``fastmath``: the kernels do the same IEEE operations in the same order as the
numpy code they replace, so results are bit for bit the same.

Loading a cached kernel still costs a process its first call: numba sets up its
type registries once (~0.3 s, scipy's BLAS check among it), then reads each
kernel's machine code. :func:`warm_in_background` does that in a thread while the
caller reads its log, for the signatures the on-disk cache already holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from numba import njit

F = TypeVar("F", bound=Callable)

#: every kernel of the package, for the warm-up
_KERNELS: list[Any] = []
_warming: threading.Thread | None = None
_lock = threading.Lock()


def kernel(fn: F) -> F:
    """Compile ``fn`` with numba (no Python objects inside; cached; GIL released)."""
    disp = njit(cache=True, nogil=True)(fn)
    _KERNELS.append(disp)
    return disp  # type: ignore[return-value]


def _cached_signatures(disp: Any) -> list[Any]:
    """The signatures of ``disp`` in its on-disk cache for this machine (``[]`` where that cannot be
    read: numba's cache index is not public API, so any surprise means no warm-up, never an error)."""
    try:
        index = disp._cache._cache_file._load_index()
        magic = disp.targetctx.codegen().magic_tuple()
        return [key[0] for key in index if len(key) > 1 and key[1] == magic]
    except Exception:  # noqa: BLE001 - an optimisation only
        return []


def _warm() -> None:
    for disp in list(_KERNELS):
        for sig in _cached_signatures(disp):
            try:
                disp.compile(sig)  # (from the cache: a load, not a compile)
            except Exception:  # noqa: BLE001 - the real call compiles or reports it
                pass


def warm_in_background() -> threading.Thread | None:
    """Load the cached kernels in a daemon thread, once per process; the thread (``None`` if
    already started). A kernel called meanwhile waits for numba's compiler lock, never loads twice."""
    global _warming
    with _lock:
        if _warming is not None:
            return None
        _warming = threading.Thread(target=_warm, name="icv-numba-warm", daemon=True)
        _warming.start()
        return _warming
