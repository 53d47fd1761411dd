import numpy as np
import pytest

from geoclim.data.datasets import EpochBatchSampler
from geoclim.errors import ConfigError


def batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return [list(b) for b in sampler]


def test_permutation_depends_only_on_seed_and_epoch():
    a = EpochBatchSampler(50, 8, shuffle=True, seed=3)
    b = EpochBatchSampler(50, 8, shuffle=True, seed=3)
    assert batches(a, 2) == batches(b, 2)  # a fresh sampler (a resumed run) replays epoch 2
    assert batches(a, 0) != batches(a, 1)
    assert sorted(np.concatenate(batches(a, 1))) == list(range(50))


def test_ranks_share_each_global_batch():
    single = batches(EpochBatchSampler(50, 8, shuffle=True, seed=0), 1)
    shards = [
        batches(EpochBatchSampler(50, 8, shuffle=True, seed=0, rank=r, world_size=2), 1)
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == len(single)
    for i, full in enumerate(single):
        assert shards[0][i] + shards[1][i] == full


def test_unshuffled_order_and_length():
    sampler = EpochBatchSampler(10, 4, shuffle=False)
    assert batches(sampler, 5) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(sampler) == 3


def test_batch_smaller_than_world_is_an_error():
    with pytest.raises(ConfigError, match="batch_size"):
        EpochBatchSampler(10, 1, shuffle=False, world_size=2)
