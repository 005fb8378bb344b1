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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from numba import njit

F = TypeVar("F", bound=Callable)


def kernel(fn: F) -> F:
    """Compile ``fn`` with numba (no Python objects inside; cached; GIL released)."""
    return njit(cache=True, nogil=True)(fn)  # type: ignore[return-value]
