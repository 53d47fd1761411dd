"""``geoclim-train`` keeps the libraries' own chatter off the console, nothing else."""

import warnings

import pytest

from geoclim.cli import train as train_cli


def _caught(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught]


def _lightning_moves_a_batch():
    # what Lightning runs on every batch it moves to the device (it builds a LeafSpec)
    torch = pytest.importorskip("torch")
    from lightning.pytorch.utilities._pytree import _tree_flatten

    _tree_flatten({"past": torch.zeros(1)})


def test_the_lightning_deprecation_is_real_and_filtered():
    # without the filter the warning appears: when the libraries fix it, this test says so
    assert any("LeafSpec" in m for m in _caught(_lightning_moves_a_batch))

    def quiet_then_move():
        train_cli._quiet_library_warnings()
        _lightning_moves_a_batch()

    assert _caught(quiet_then_move) == []


def test_only_the_listed_warnings_are_filtered():
    def warn_all():
        train_cli._quiet_library_warnings()
        warnings.warn(
            "Attribute 'loss' is an instance of `nn.Module` and is already saved during "
            "checkpointing.",
            UserWarning,
            stacklevel=1,
        )
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("a data problem the user must see", UserWarning, stacklevel=1)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", UserWarning, stacklevel=1)

    assert _caught(warn_all) == [
        "a data problem the user must see",
        "`isinstance(treespec, LeafSpec)` is deprecated",  # another category: not ours to hide
    ]
