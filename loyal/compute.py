"""The compute engine: run heavy stages in this process or on a Dask cluster.

`engine: local` needs nothing; `engine: dask` connects to `compute.scheduler` or starts a
LocalCluster for the run. Callers write one code path over partitions and ask `dask_client` for a
client only when the engine is Dask.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from loyal.errors import ConfigError
from loyal.settings import ComputeSettings

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


@contextmanager
def dask_client(compute: ComputeSettings) -> Iterator[Client | None]:
    """A Dask client for the configured engine, or None for the local engine.

    A `local-cluster` is started here and closed on exit; a scheduler address is connected to and
    left running. Inside an open `dask_client` block (e.g. a test or a flow that runs several
    stages on one cluster), the client already current is reused and left open.
    """
    if compute.engine == "local":
        yield None
        return
    from distributed import Client, LocalCluster

    try:
        current = Client.current()
    except ValueError:  # no client yet
        current = None
    if current is not None and current.status == "running":
        yield current
        return

    if compute.scheduler == "local-cluster":
        with (
            LocalCluster(
                n_workers=compute.workers,
                threads_per_worker=compute.threads_per_worker,
                memory_limit=compute.memory_limit,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            log.info("dask: local cluster with %d workers started", compute.workers)
            yield client
        return
    try:
        client = Client(compute.scheduler, timeout="30s")
    except (OSError, TimeoutError) as error:
        raise ConfigError(
            f"compute.scheduler: cannot reach the Dask scheduler at {compute.scheduler} ({error})"
        ) from None
    with client:
        log.info("dask: connected to %s", compute.scheduler)
        yield client
