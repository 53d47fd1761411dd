"""Distributed training helpers: Hydra-aware DDP child processes and rank bookkeeping.

Lightning's ``ddp`` strategy (subprocess launcher) starts ranks ``1..N-1`` by re-running the
command line. For a single Hydra run its documented Hydra support does this right (the
same overrides, in the job's ``hydra.run.dir``, with ``hydra.output_subdir=null``), and
geoclim leaves it alone. Under a Hydra *multirun* it repeats ``-m`` and every sweep list, so
each child would start the whole sweep again in a fresh (stray) run directory. Lightning has
no supported hook for the child command: the fix is upstream work in progress
(Lightning-AI/pytorch-lightning#18175, "Hydra + DDP improvements", open; the problem is
tracked in facebookresearch/hydra#2070 and ashleve/lightning-hydra-template#393). Until it
lands, :func:`hydra_job_launcher` is a guarded fallback: only during a multirun job's
``fit``, and only if Lightning still has the function it calls for the command
(``_hydra_subprocess_cmd(local_rank)``), that function is swapped for
:func:`hydra_job_command`, which re-runs exactly the current job (its own overrides,
``hydra.overrides.task``, in its output directory, without a second ``.hydra/`` folder), and
restored afterwards. If a Lightning release renames it, a multirun with ``ddp`` fails with a
:class:`~geoclim.errors.ConfigError` that names the alternatives instead of starting stray
sweeps. On SLURM (``srun`` starts every rank) and with ``torchrun`` no child is launched by
Lightning and nothing here is used.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist

from geoclim.errors import ConfigError

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


@contextmanager
def hydra_job_launcher() -> Iterator[None]:
    """During a Hydra multirun job, make DDP children re-run this job only (module docstring).

    Outside a multirun (a single run, no Hydra, SLURM, ``torchrun``) this does nothing.

    Raises:
        ConfigError: in a multirun, when the installed Lightning no longer has the command
            function this fallback replaces (use ``trainer.strategy=ddp_spawn``, SLURM or
            ``torchrun`` then).

    """
    if not _in_multirun():
        yield
        return
    from lightning.pytorch.strategies.launchers import subprocess_script

    original = getattr(subprocess_script, "_hydra_subprocess_cmd", None)
    if original is None or list(inspect.signature(original).parameters) != ["local_rank"]:
        raise ConfigError(
            "DDP under a Hydra multirun needs Lightning's _hydra_subprocess_cmd(local_rank), "
            f"which lightning {_lightning_version()} does not have; use "
            "trainer.strategy=ddp_spawn, SLURM (hydra/launcher=slurm) or torchrun, or a "
            "single run per job"
        )
    subprocess_script._hydra_subprocess_cmd = hydra_job_command
    try:
        yield
    finally:
        subprocess_script._hydra_subprocess_cmd = original


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _lightning_version() -> str:
    import lightning

    return str(lightning.__version__)


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
