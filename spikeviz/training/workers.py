"""The one parallel runner of trainings, grids and tables: a Dask cluster, on this machine or at a scheduler's address."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from dask.distributed import Client, LocalCluster

from ..errors import SpikevizError


@contextmanager
def dask_client(scheduler: str = "local", workers: int = 2) -> Iterator[Client]:
    """A Dask client: `workers` local processes of one thread each (torch's threads would
    otherwise compete for the cores), or the cluster at `scheduler` (tcp://HOST:PORT)."""
    if scheduler == "local":
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None, host="127.0.0.1") as cluster, \
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
