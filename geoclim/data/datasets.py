"""``WindowDataset``: a sample index and its arrays, served as batches of tensors.

Batches are gathered whole: the DataLoader's sampler yields lists of sample rows
(``BatchSampler``) and ``dataset[rows]`` returns the full :class:`geoclim.types.Batch`, so the
cost per batch is a handful of vectorised gathers, not ``B`` Python calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from geoclim.data.windows import SampleIndex, WindowArrays, WindowSpec, gather
from geoclim.types import Batch


class WindowDataset(Dataset):
    """Serves batches of windows from shared arrays.

    Args:
        arrays: the normalised arrays (shared, never copied).
        index: the samples of one split.
        spec: window spec.

    """

    def __init__(self, arrays: WindowArrays, index: SampleIndex, spec: WindowSpec):
        self.arrays, self.index, self.spec = arrays, index, spec

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, rows: int | Sequence[int] | np.ndarray) -> Batch:
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        t, y, x = self.index.decode(rows)
        fields = gather(self.arrays, self.spec, t, y, x)
        return {k: torch.from_numpy(v) for k, v in fields.items()}  # type: ignore[return-value]


def batch_loader(
    dataset: WindowDataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader that gathers whole batches (see module docstring)."""
    if shuffle:
        generator = torch.Generator().manual_seed(seed)
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        sampler=BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last),
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
