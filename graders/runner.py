"""Which runner grades a batch: this machine's worker processes, or Dask (``--scheduler``/``--cluster``).

:mod:`graders.batch` is given a :class:`graders.pool.TaskRunner` and never imports Dask or
:mod:`graders.cluster`; this is the one place that chooses, from the batch's options.
"""

from __future__ import annotations

import os

from graders.batch import BatchOptions, BatchUsageError
from graders.pool import LocalRunner, TaskRunner


def runner_for(options: BatchOptions) -> TaskRunner:
    """A :class:`graders.cluster.DaskRunner` when the options name a scheduler or a cluster, else a :class:`LocalRunner`."""
    if not options.on_dask:
        return LocalRunner(options.jobs if options.jobs is not None else (os.cpu_count() or 1))
    try:
        from graders.cluster import DaskRunner
    except ImportError as error:
        raise BatchUsageError(f"--scheduler/--cluster need Dask: pip install 'nbgrade-ml[cluster]' ({error})") from None
    return DaskRunner(options.resolved_scheduler(), options.cluster, options.cluster_workers)
