"""The Ray executor: a sweep's points as Ray tasks, on a cluster the sweep joins or on a local
Ray instance it starts (and shuts down, with a watchdog, :class:`eoslab.janitor.RayJanitor`, that
kills what is left of it when the sweep ends or is killed, even by SIGKILL). Joining a Ray cluster
that does not answer fails within :data:`RAY_CONNECT_TIMEOUT_S`. The sweep folder must be visible
to every node.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from ..config import to_toml
from ..errors import SweepError
from ..janitor import RayJanitor
from ._signals import raise_interrupt
from .grid import GridPoint
from .local_executor import available_cores
from .point import PointStatus, after_worker
from .worker import point_from_toml

#: Seconds to wait for a Ray cluster given by ``address`` to answer before giving up.
RAY_CONNECT_TIMEOUT_S = 30.0


def run_ray(
    todo: list[GridPoint],
    runs: Path,
    analysis: bool,
    address: str | None,
    workers: int | None,
    cpus_per_run: float,
    gpus_per_run: float,
    threads: int,
    finished: Callable[[GridPoint, PointStatus], None],
) -> None:
    """Run the points as Ray tasks with ``cpus_per_run``/``gpus_per_run`` resources and
    ``threads`` threads each. Joins
    ``address`` (or the Ray instance this process is already connected to); otherwise starts a
    local instance and shuts it down at the end (:class:`~eoslab.janitor.RayJanitor`).
    """
    import ray  # optional (the ray extra), and slow to import: loaded only for a Ray sweep

    connected, janitor = False, None
    try:
        if not ray.is_initialized():
            if address:
                join_ray(address)
            else:
                num_cpus = int(workers * cpus_per_run) if workers else available_cores()
                janitor = RayJanitor()
                ray.init(address="local", num_cpus=max(1, num_cpus), include_dashboard=False, log_to_driver=False)
            connected = True
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, raise_interrupt)  # ray.init installed its own
        task = ray.remote(point_from_toml).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run)
        refs = {}
        for point in todo:
            refs[task.remote(to_toml(point.config), str(runs / point.run_id), analysis, threads)] = point
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            point = refs.pop(ready[0])
            try:
                status = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the worker died, or the task could not run
                status = after_worker(runs / point.run_id, analysis, f"ray task failed: {type(e).__name__}: {e}")
            finished(point, status)
    finally:
        if connected:
            ray.shutdown()
        if janitor is not None:
            janitor.close()


def join_ray(address: str) -> None:
    """``ray.init(address)``, failing with :class:`SweepError` within :data:`RAY_CONNECT_TIMEOUT_S`
    when nothing answers there (ray.init itself would retry for ever).
    """
    import ray  # optional (the ray extra), and slow to import: loaded only for a Ray sweep

    hostport = address.split("://", 1)[-1]
    if hostport != "auto":
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise SweepError(f"--address: expected HOST:PORT or ray://HOST:PORT, got {address!r}")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
        except OSError as e:
            raise SweepError(
                f"ray: no Ray cluster answers at {address} ({e.strerror or e}); check the address "
                f"(`ray status` on the head node prints it)"
            ) from None
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            ray.init(address=address, log_to_driver=False)
        except BaseException as e:  # handed to the caller's thread
            errors.append(e)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(RAY_CONNECT_TIMEOUT_S)
    if thread.is_alive():
        raise SweepError(
            f"ray: {address} did not answer as a Ray cluster within {RAY_CONNECT_TIMEOUT_S:g} s; check the "
            f"address (`ray status` on the head node prints it)"
        )
    if errors:
        raise SweepError(f"ray: cannot join {address}: {' '.join(str(errors[0]).split())}") from None
