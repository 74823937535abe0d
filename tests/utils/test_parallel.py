"""sharpkit.utils.parallel.process_map: the same results, in job order, in-process and in worker processes."""
from __future__ import annotations

import math
import os

from sharpkit.utils.parallel import process_map


def test_workers_give_the_in_process_results_in_job_order():
    jobs = [9.0, 1.0, 16.0, 4.0, 25.0]
    assert process_map(math.sqrt, jobs, 1) == [3.0, 1.0, 4.0, 2.0, 5.0]
    assert process_map(math.sqrt, jobs, 2) == [3.0, 1.0, 4.0, 2.0, 5.0]


def test_more_than_one_worker_runs_in_other_processes():
    pids = process_map(_pid, range(4), 2)
    assert os.getpid() not in pids


def _pid(_job: int) -> int:  # picklable by spawn only if importable; os.getpid itself takes no argument
    return os.getpid()
