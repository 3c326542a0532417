"""Where tasks run: inline (one worker), a local Dask cluster of worker processes (one
thread each), or an existing ``dask.distributed`` cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from voxfield.errors import OptionError

#: Seconds to wait for a scheduler given with ``scheduler=`` before giving up.
CONNECT_TIMEOUT_S = 10


@contextmanager
def dask_client(workers: int, scheduler: str | None, memory_limit: int | None = None
                ) -> Iterator[Callable[[], Any]]:
    """Yields ``get()``: the ``distributed.Client`` for ``scheduler``, or for a new local
    cluster of ``workers`` processes, or ``None`` (run inline) for one local worker. A
    local cluster starts in the background, so the caller can work (probe the codecs)
    while its worker processes boot; ``get()`` waits for it."""
    if scheduler is None and workers <= 1:
        yield lambda: None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise OptionError("more than one worker needs Dask: pip install 'voxfield[dask]'") from None
    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise OptionError(f"Dask scheduler {scheduler} does not answer within {CONNECT_TIMEOUT_S} s "
                              f"({type(exc).__name__}); start it (dask scheduler) or check the address") from None
        try:
            yield lambda: client
        finally:
            client.close()
        return
    from concurrent.futures import ThreadPoolExecutor

    def start() -> tuple[Any, Any]:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               memory_limit=memory_limit or "auto", silence_logs=logging.ERROR)
        return cluster, Client(cluster)

    pool = ThreadPoolExecutor(1)
    booting = pool.submit(start)
    try:
        yield lambda: booting.result()[1]
    finally:
        try:
            cluster, client = booting.result()
            client.close()
            cluster.close()
        finally:
            pool.shutdown()


def run_tasks(client: Any, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]],
              progress: Callable[[int, int], None] | None = None) -> list[Any]:
    """Run ``fn(*a)`` for every ``a`` of ``args`` (on ``client``'s workers, or inline when
    it is None); results in the order of ``args``. The first failing task stops the run
    and its error is raised here."""
    total = len(args)
    out: list[Any] = [None] * total
    if progress:
        progress(0, total)
    if client is None:
        for i, a in enumerate(args):
            out[i] = fn(*a)
            if progress:
                progress(i + 1, total)
        return out
    from distributed import as_completed

    futures = [client.submit(fn, *a, pure=False) for a in args]
    index = {f.key: i for i, f in enumerate(futures)}
    done = 0
    try:
        for fut in as_completed(futures):
            out[index[fut.key]] = fut.result()
            done += 1
            if progress:
                progress(done, total)
    except BaseException:
        client.cancel(futures)
        raise
    return out
