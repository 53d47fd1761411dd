"""Distributed training helpers: Hydra-aware DDP child processes and rank bookkeeping.

Lightning's ``ddp`` strategy (subprocess launcher) starts ranks ``1..N-1`` by re-running the
command line. Under a Hydra *multirun* its default command repeats ``-m`` and every sweep
list, so each child would start the whole sweep again in a fresh (stray) run directory.
:func:`patch_hydra_ddp_launcher` replaces that command by one that runs exactly the current
job: its own overrides (``hydra.overrides.task``), in the job's output directory, without
writing a second ``.hydra/`` folder. On SLURM (``srun`` starts every rank) and with
``torchrun`` no child is launched by Lightning and nothing here is used.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def hydra_job_command(local_rank: int) -> tuple[Sequence[str], str]:
    """Command and working directory that re-run the current Hydra job as rank ``local_rank``.

    Returns:
        ``(argv, cwd)`` for :class:`subprocess.Popen`.

    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hydra_cfg = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += list(hydra_cfg.overrides.task)
    command += [
        f"hydra.run.dir={hydra_cfg.runtime.output_dir}",
        "hydra.output_subdir=null",
        f"hydra.job.name={hydra_cfg.job.name}_ddp_rank{local_rank}",
        "hydra/hydra_logging=none",
    ]
    return command, get_original_cwd()


def patch_hydra_ddp_launcher() -> None:
    """Make Lightning's DDP subprocess launcher start children with :func:`hydra_job_command`."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = hydra_job_command


def release_process_group() -> None:
    """Leave the process group after ``fit`` so rank 0 can evaluate alone."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


LAUNCH_VARIABLES = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "NODE_RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "OMP_NUM_THREADS",
)


@contextmanager
def launch_environment() -> Iterator[None]:
    """Undo what Lightning's launcher sets in this process when the block ends.

    The launcher exports ``LOCAL_RANK``, ``MASTER_PORT``... and lowers the thread count in
    the process that starts the ranks. In a multirun the next job runs in the same process
    and would take those variables for a scheduler's (no children launched, a hang); so the
    variables and the thread count are restored after each fit.
    """
    saved = {name: os.environ.get(name) for name in LAUNCH_VARIABLES}
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        torch.set_num_threads(threads)
