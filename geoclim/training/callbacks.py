"""Callbacks geoclim adds to Lightning's."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose best model survives a resume into a new run directory.

    Every ``geoclim-train ckpt_path=...`` runs in a fresh Hydra directory, and Lightning then
    forgets the best score of the interrupted run (it only reloads it for the same
    ``dirpath``), so a resumed run would pick its best among the resumed epochs only. This
    callback copies the previous best checkpoint into the new directory and keeps its score,
    so a resumed run ends with the same best checkpoint as an uninterrupted one.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state, carrying the best checkpoint over from another directory."""
        super().load_state_dict(state_dict)
        previous = state_dict.get("best_model_path") or ""
        if (
            state_dict.get("dirpath") == self.dirpath
            or self.dirpath is None
            or not self.monitor
            or not Path(previous).is_file()
        ):
            return
        target = Path(self.dirpath) / Path(previous).name
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(previous).resolve() != target.resolve():
            shutil.copy2(previous, target)
        score = state_dict["best_model_score"]
        self.best_model_path = self.kth_best_model_path = str(target)
        self.best_model_score = self.kth_value = score
        self.best_k_models = {str(target): score}
        log.info("resumed best checkpoint %s (%s = %s)", target, self.monitor, float(score))
