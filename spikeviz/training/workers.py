"""The one parallel runner of trainings, grids and tables: a Dask cluster, on this machine or at a scheduler's address."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import dask
from dask.distributed import Client, LocalCluster

from ..errors import SpikevizError


@contextmanager
def dask_client(scheduler: str = "local", workers: int = 2) -> Iterator[Client]:
    """A Dask client: `workers` local processes of one thread each (torch's threads would
    otherwise compete for the cores), or the cluster at `scheduler` (tcp://HOST:PORT)."""
    if scheduler == "local":
        # Not Dask's MALLOC_TRIM_THRESHOLD_ for its workers: set at all, it turns off glibc's
        # adaptive mmap threshold, so every large numpy/torch array became a fresh mmap and its
        # page faults (an evaluation ran twice as long, half of it system time). The nanny also
        # exports it to this process's environment, where every later subprocess inherited it.
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                             dashboard_address=None, host="127.0.0.1",
                             # No dashboard; its HTTP endpoints (health, metrics) stay, on a free
                             # port: on Dask's 8787, a second grid at once warned of a busy port.
                             scheduler_kwargs={"dashboard": False,
                                               "dashboard_address": "127.0.0.1:0"}) as cluster, \
                Client(cluster) as client:
            yield client
        return
    if not scheduler.startswith(("tcp://", "tls://", "inproc://")):
        raise SpikevizError(f"--scheduler must be 'local' or an address like tcp://HOST:PORT, "
                            f"got {scheduler!r}")
    try:
        client = Client(scheduler, timeout="20s")
    except OSError as exc:
        raise SpikevizError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from exc
    with client:
        yield client
