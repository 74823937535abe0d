"""Map a function over jobs in worker processes (the probes, benchmarks and sweeps of one machine)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


def process_map(fn: Callable[[Job], Result], jobs: Iterable[Job], workers: int = 1) -> list[Result]:
    """``[fn(job) for job in jobs]``, in ``workers`` processes when it is more than 1; results in job order.

    The processes are spawned, not forked: a forked child inherits the parent's torch thread pool and
    OpenMP state, which can hang or change the thread count a result is computed with. ``fn`` and every
    job must therefore be picklable (a module-level function and plain data)."""
    jobs = list(jobs)
    if workers <= 1:
        return [fn(job) for job in jobs]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        return pool.map(fn, jobs, chunksize=1)
