"""Fleet mileage on a Dask cluster: Parquet row groups in parallel, same totals.

The log's row groups are cut into contiguous ranges, one task each. A vehicle
whose rows cross a range boundary belongs wholly to the range where it starts:
a task skips its leading rows of the vehicle that ended the previous range
(the last non-empty ``vehicle_id`` of row group ``start - 1``) and reads on past
its end while the vehicle of its last row group continues. Rows without a
vehicle id inside such a run go with the run. Every vehicle is therefore
processed by one :class:`~geo._fleet_engine.MileageEngine` from its first to
its last row, exactly as in one process, and the engines' totals (integer
micrometres) add up to the same numbers. This needs the log sorted by vehicle
(each vehicle's rows contiguous).

The network index is built once and scattered to the workers. The matching
itself is numpy arrays end to end, so dask-geopandas has nothing to add here.

Memory allocator
----------------
Dask starts its worker processes with ``MALLOC_TRIM_THRESHOLD_=65536`` so that
they hand freed memory back to the system at once. That also switches off
glibc's adaptive mmap threshold, so every numpy temporary above 128 KiB is
mapped fresh and faulted in page by page: the engine ran about 3 times slower
on a worker than in one process. While a task runs, :func:`_reusable_heap`
lets freed blocks of up to 32 MiB be reused (glibc only, and only when such an
environment variable is set); afterwards it restores the environment's values
and trims the heap.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._fleet_engine import EngineParams, MileageEngine, Totals
from ._fleet_hmm import HmmEngine, HmmParams
from ._fleet_routes import RouteTable
from ._fleet_io import FleetLog, chunk_from_table
from ._fleet_match import PieceMatcher
from .errors import InputError


def _vehicle_strings(batch: pa.RecordBatch | pa.Table, col: str) -> pa.Array:
    arr = batch.column(col)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    arr = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


def last_vehicle(log: FleetLog, row_group: int) -> str | None:
    """The last non-empty vehicle id of a row group."""
    col = log.info.columns["vehicle_id"]
    tab = log._pf.read_row_group(row_group, columns=[col])
    v = _vehicle_strings(tab, col).drop_null()
    return v[len(v) - 1].as_py() if len(v) else None


def _run_length(v: pa.Array, vehicle: str | None, start: int) -> int:
    """Rows from ``start`` whose vehicle is ``vehicle`` or empty, up to the first other one."""
    if vehicle is None:
        return 0
    sub = v.slice(start)
    other = pc.and_(pc.is_valid(sub), pc.not_equal(sub, vehicle)).to_numpy(zero_copy_only=False)
    hit = np.flatnonzero(other)
    return int(hit[0]) if len(hit) else len(sub)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_GLIBC_MMAP_DEFAULT = 128 * 1024
_heap_lock = threading.Lock()
_heap_users = 0


def _libc() -> Any:
    """glibc through ctypes, or ``None`` (other C libraries have no mallopt/malloc_trim)."""
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
        return lib if lib is not None and hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else None
    except OSError:
        return None


@contextlib.contextmanager
def _reusable_heap() -> Iterator[None]:
    """Let numpy temporaries reuse freed heap memory while the block runs (see the module docstring)."""
    global _heap_users
    trim_env = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    mmap_env = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    lib = _libc() if (trim_env or mmap_env) else None  # without them glibc adapts by itself
    if lib is None:
        yield
        return
    with _heap_lock:
        _heap_users += 1
        if _heap_users == 1:
            lib.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
            lib.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                lib.mallopt(_M_MMAP_THRESHOLD, _env_int(mmap_env, _GLIBC_MMAP_DEFAULT))
                if trim_env:
                    lib.mallopt(_M_TRIM_THRESHOLD, _env_int(trim_env, 128 * 1024))
                lib.malloc_trim(0)


def _env_int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


#: Index files already mapped by this worker process (path -> matcher).
_MAPPED: dict[str, PieceMatcher] = {}


def save_index(matcher: PieceMatcher, folder: str | os.PathLike[str]) -> str:
    """Write the matcher's arrays as ``.npy`` files (plus a small pickle of the rest) into ``folder``.

    Workers on the same machine map them read-only (:func:`load_index`): the
    page cache holds one copy for all of them, where a scatter pickles the index
    and sends a private copy to each worker (216 MB for a 74k-piece network).
    """
    import pickle

    folder = os.fspath(folder)
    rest = {}
    for k, v in vars(matcher).items():
        if isinstance(v, np.ndarray) and v.dtype != object:
            np.save(os.path.join(folder, f"{k}.npy"), v, allow_pickle=False)
        else:
            rest[k] = v
    with open(os.path.join(folder, "rest.pkl"), "wb") as f:
        pickle.dump(rest, f, protocol=pickle.HIGHEST_PROTOCOL)
    return folder


def load_index(folder: str) -> PieceMatcher:
    """The matcher written by :func:`save_index`, its arrays memory-mapped read-only (once per process)."""
    import pickle

    m = _MAPPED.get(folder)
    if m is None:
        m = PieceMatcher.__new__(PieceMatcher)
        with open(os.path.join(folder, "rest.pkl"), "rb") as f:
            vars(m).update(pickle.load(f))
        for name in os.listdir(folder):
            if name.endswith(".npy"):
                setattr(m, name[:-4], np.load(os.path.join(folder, name), mmap_mode="r"))
        _MAPPED.clear()  # one index at a time: a new run on this worker drops the old map
        _MAPPED[folder] = m
    return m


#: The route table of this worker's index: its cached shortest paths serve every task of the run.
#: One per worker thread: a RouteTable's caches are not thread-safe, and the compiled kernels
#: release the GIL, so two threads of one worker do run side by side.
_ROUTES: dict[tuple[int, float, int], RouteTable] = {}


def _worker_routes(matcher: PieceMatcher, bound_m: float) -> RouteTable:
    key = (id(matcher), float(bound_m), threading.get_ident())
    rt = _ROUTES.get(key)
    if rt is None:
        for k in [k for k in list(_ROUTES) if k[2] == key[2]]:
            _ROUTES.pop(k, None)
        rt = _ROUTES[key] = RouteTable(matcher, bound_m)
    return rt


def _unmap() -> None:
    """Drop this worker's mapped index and routes (run on each worker at the end of a run)."""
    _MAPPED.clear()
    _ROUTES.clear()


def run_partition(path: str, start: int, stop: int, matcher: PieceMatcher | str, crs: str, params: EngineParams,
                  chunk_rows: int, hmm: HmmParams | None = None) -> Totals:
    """Totals of the vehicles that start in row groups ``start..stop-1`` (see the module docstring).

    ``matcher`` is the index itself or the folder :func:`save_index` wrote.
    """
    if isinstance(matcher, str):
        matcher = load_index(matcher)
    with _reusable_heap():
        return _run_partition(path, start, stop, matcher, crs, params, chunk_rows, hmm)


def _run_partition(path: str, start: int, stop: int, matcher: PieceMatcher, crs: str, params: EngineParams,
                   chunk_rows: int, hmm: HmmParams | None = None) -> Totals:
    from ._jit import warm_in_background

    warm_in_background()  # (once per worker process: the compiled kernels loaded while it reads)
    log = FleetLog(path, chunk_rows=chunk_rows)
    n_rg = log.info.row_groups or 0
    col = log.info.columns["vehicle_id"]
    skip = last_vehicle(log, start - 1) if start > 0 else None
    tail = last_vehicle(log, stop - 1)
    leading = skip is not None
    eng = (HmmEngine(matcher, crs, params, hmm, routes=_worker_routes(matcher, hmm.route_bound_m))
           if hmm is not None else MileageEngine(matcher, crs, params))
    for rg in range(start, n_rg):
        extending = rg >= stop
        for first, batch in log.iter_row_groups(rg, rg + 1):
            v = _vehicle_strings(batch, col)
            lo, hi, done = 0, batch.num_rows, False
            if leading:
                lo = _run_length(v, skip, 0)
                leading = lo == batch.num_rows
            if extending:
                hi = lo + _run_length(v, tail, lo)
                done = hi < batch.num_rows
            if hi > lo:
                eng.feed(chunk_from_table(batch.slice(lo, hi - lo), log.info.columns, first + lo))
            if done:
                return eng.finish()
        if extending and tail is None:
            break
    return eng.finish()


def _ranges(n_rg: int, n_tasks: int) -> list[tuple[int, int]]:
    n_tasks = max(1, min(n_rg, n_tasks))
    cuts = np.linspace(0, n_rg, n_tasks + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def mileage_on_dask(log: FleetLog, matcher: PieceMatcher, crs: str, params: EngineParams,
                    scheduler: Any, tasks_per_worker: int = 2, hmm: HmmParams | None = None,
                    while_waiting: Callable[[], None] | None = None) -> tuple[Totals, str]:
    """Run the engine over the log's row groups on Dask; returns the totals and the scheduler label.

    ``scheduler``: a ``distributed.Client``, a scheduler address (``tcp://host:8786``)
    or ``"local"`` / ``"local:N"`` (a LocalCluster of N single-threaded worker processes).
    ``hmm``: match with :class:`~geo._fleet_hmm.HmmEngine` (``None``: the snap engine).
    ``while_waiting``: work for this process while the workers run (its errors are left for the
    caller to meet again later: the results do not depend on it).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:  # pragma: no cover - distributed is an optional extra
        raise InputError("--scheduler needs dask.distributed", hint="pip install 'icv[dask]'") from e
    own_cluster = own_client = None
    local = False
    if isinstance(scheduler, LocalStart):
        own_cluster, client = scheduler.result()
        own_client = client
        label = f"dask LocalCluster ({scheduler.n} workers)"
        local = True
    elif isinstance(scheduler, Client):
        client = scheduler
        label = f"dask {client.scheduler.address if client.scheduler else 'client'}"
    elif isinstance(scheduler, str) and scheduler.startswith("local"):
        n = _local_workers(scheduler)
        own_cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = own_client = Client(own_cluster)
        label = f"dask LocalCluster ({n} workers)"
        local = True
    else:
        try:
            client = own_client = Client(str(scheduler), timeout="20s")
        except OSError as e:
            raise InputError(f"cannot reach the Dask scheduler {scheduler!r} ({e})",
                             hint="check the address (tcp://HOST:8786) or use --scheduler local") from e
        label = f"dask {scheduler}"
    try:
        workers = max(1, sum(client.nthreads().values()))
        n_rg = log.info.row_groups or 0
        if n_rg == 0:
            return Totals(matcher.n_pieces, matcher.n_subzones), label
        with contextlib.ExitStack() as stack:
            if local:  # workers on this machine map one copy of the index from a file
                import tempfile

                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="icv-index-", ignore_cleanup_errors=True))
                m_f: Any = save_index(matcher, folder)
            else:
                m_f = client.scatter(matcher, broadcast=True)
            futs = [client.submit(run_partition, str(log.path), a, b, m_f, crs, params, log.chunk_rows, hmm,
                                  pure=False)
                    for a, b in _ranges(n_rg, workers * tasks_per_worker)]
            if while_waiting is not None:
                with contextlib.suppress(Exception):
                    while_waiting()
            total = Totals(matcher.n_pieces, matcher.n_subzones)
            for part in client.gather(futs):
                total.merge(part)
            del futs
            if local:
                client.run(_unmap)  # unmap before the folder goes
        return total, label
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()


def _local_workers(scheduler: str) -> int:
    return int(scheduler.split(":", 1)[1]) if ":" in scheduler else 2


class LocalStart:
    """A LocalCluster started in a background thread while the caller builds the index.

    Starting worker processes (each imports numpy, pandas, pyarrow and icv)
    takes seconds; :func:`geo.fleet.compute_mileage` overlaps it with reading
    the network's index and the log's noise estimate.
    """

    def __init__(self, scheduler: str) -> None:
        import concurrent.futures

        self.n = _local_workers(scheduler)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="icv-dask-start")
        self._future = self._pool.submit(self._start)

    def _start(self) -> tuple[Any, Any]:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=self.n, threads_per_worker=1, processes=True, dashboard_address=None)
        return cluster, Client(cluster)

    def result(self) -> tuple[Any, Any]:
        """The cluster and its client (waits for the start)."""
        try:
            return self._future.result()
        finally:
            self._pool.shutdown(wait=False)

    def close(self) -> None:
        """Close the cluster if it started (when the run stops before it is used)."""
        try:
            cluster, client = self.result()
        except Exception:  # noqa: BLE001 - a failed start has nothing to close
            return
        client.close()
        cluster.close()
