"""Import-time economies of the command line (see ``bench/bench_startup.py``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def arrow_hidden() -> Iterator[bool]:
    """Modules first imported inside this block (pandas, pyogrio) load without pyarrow.

    pandas 3 imports pyarrow at start-up only to back string columns with Arrow
    arrays when it is installed, and pyogrio to offer Arrow reads; without it
    strings are Python objects, with the same values. That import is 0.1-0.15 s
    CPU, a tenth of a whole ``icv stats``. pyarrow itself is importable again
    after the block: Parquet reads and writes load it on first use
    (``tests/test_stats.py`` checks a round trip). Yields False, and hides
    nothing, where pandas or pyarrow is loaded already.
    """
    if "pandas" in sys.modules or "pyarrow" in sys.modules:
        yield False
        return
    sys.modules["pyarrow"] = None  # type: ignore[assignment]  # `import pyarrow` raises ImportError
    try:
        yield True
    finally:
        if "pyarrow" in sys.modules and sys.modules["pyarrow"] is None:
            del sys.modules["pyarrow"]
