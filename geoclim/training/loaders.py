"""The Lightning datamodule a network fits with, over the datamodule's windows.

The batches come from the datamodule (:meth:`GeoDataModule.loader`, whose
:class:`~geoclim.data.datasets.EpochBatchSampler` makes the order depend only on the seed and
the epoch, so ``ckpt_path=...`` resumes exactly where an uninterrupted run would be, and
shards each global batch across DDP ranks). :class:`WindowLoaders` only chooses which split
each stage reads (over-fitting validates on the training batch) and asks for the loaders
after the DDP launch, when the rank is known.
"""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from geoclim.data.datamodule import GeoDataModule


class WindowLoaders(L.LightningDataModule):
    """The loaders :func:`geoclim.training.train.train` fits with, built after DDP launch.

    Loaders are created when Lightning asks for them, so each rank knows its rank and the
    world size. Training batches are sharded across ranks; validation runs on the whole val
    split on every rank (identical metrics, no padding duplicates).

    Args:
        dm: the set-up datamodule.
        shuffle: shuffle the training samples each epoch.
        val_split: split validated on (``"train"`` when over-fitting one batch).

    """

    def __init__(self, dm: GeoDataModule, *, shuffle: bool = True, val_split: str = "val"):
        super().__init__()
        self.dm, self.shuffle, self.val_split = dm, shuffle, val_split

    def train_dataloader(self) -> DataLoader:
        """Shards of the shuffled training batches for this rank."""
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return self.dm.loader("train", shuffle=self.shuffle, rank=rank, world_size=world)

    def val_dataloader(self) -> DataLoader:
        """All validation batches, in index order."""
        return self.dm.loader(self.val_split, shuffle=False)
