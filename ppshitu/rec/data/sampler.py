"""Batch samplers. They yield lists of (index, key) pairs; the key (epoch and position)
seeds that item's augmentation, so an epoch's batches and pixels depend only on
(seed, epoch), in one process or many. `set_epoch` is called by the trainer.

* `PKSampler` / `DistributedRandomIdentitySampler`: P classes × K images per batch,
  as batch-hard triplet losses need. An epoch visits every image about once: each
  class's images are shuffled and cut into chunks of K (a short last chunk is topped
  up from the same class), and batches take P chunks of P distinct classes.
  Under data-parallel training `batch_size` is per rank (PaddleClas's meaning): each step draws
  one global batch of P x world_size distinct classes and rank r takes its r-th share of P
  classes x K images, with the augmentation keys the global batch's positions; so the ranks'
  shares are disjoint and together are exactly the batch one process with
  batch_size x world_size would draw (same images, same pixels). With fewer classes than
  P x world_size, each rank's P classes are drawn on their own (a class may then appear on two
  ranks in the same step, never twice in one rank's batch).
* `DistributedBatchSampler` / `BatchSampler`: plain (shuffled) batches, e.g. for evaluation.
"""
import numpy as np
import paddle

from ...config import Field
from ...errors import ConfigError
from ...registry import SUPPLIED, Registry

SAMPLERS = Registry("sampler")
MAX_BATCH = 65536
# what the loader passes (the data set, the seed, this process's rank), never a config
_SUPPLIED = {"dataset": SUPPLIED, "seed": SUPPLIED, "rank": SUPPLIED, "world_size": SUPPLIED, "where": SUPPLIED}
_BATCH = {"batch_size": Field(int, min_value=1, max_value=MAX_BATCH, doc="images per batch (per rank)"),
          "shuffle": Field(bool), "drop_last": Field(bool)}


def _rank_and_world(rank, world_size):
    if world_size is None:
        world_size = paddle.distributed.get_world_size()
    if rank is None:
        rank = paddle.distributed.get_rank()
    return rank, world_size


@SAMPLERS.register("PKSampler")
@SAMPLERS.register("DistributedRandomIdentitySampler")
class PKSampler:
    CONFIG_SCHEMA = {**_BATCH, **_SUPPLIED,
                     "num_instances": Field((int, type(None)), min_value=1, max_value=MAX_BATCH,
                                            doc="K: images per class in a batch"),
                     "sample_per_id": Field((int, type(None)), min_value=1, max_value=MAX_BATCH,
                                            doc="PaddleClas's other name for num_instances"),
                     "id_balance": Field((bool, type(None)), doc="accepted for PaddleClas compatibility: every "
                                         "batch holds P classes x K images anyway")}

    def __init__(self, dataset, batch_size, num_instances=None, sample_per_id=None, drop_last=True, shuffle=True,
                 seed=0, rank=None, world_size=None, where="DataLoader.Train.sampler", id_balance=None):
        k = num_instances if num_instances is not None else sample_per_id
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"{where}.num_instances (K, images per class in a batch) must be a positive int, "
                              f"got {k!r}")
        if not isinstance(batch_size, int) or batch_size < 1 or batch_size % k:
            raise ConfigError(f"{where}.batch_size ({batch_size}) must be a positive multiple of "
                              f"num_instances ({k}): a batch holds P classes x K images")
        by_label = dataset.indices_by_label()
        self.p = batch_size // k
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        if self.p > len(by_label):
            raise ConfigError(f"{where}: batch_size {batch_size} / num_instances {k} = {self.p} classes per "
                              f"batch, but the data set has only {len(by_label)} classes; lower batch_size or "
                              f"raise num_instances")
        if self.p < 2:
            raise ConfigError(f"{where}: batch_size {batch_size} / num_instances {k} gives 1 class per batch; "
                              f"the triplet loss needs at least 2 (negatives)")
        self.k, self.batch_size = k, batch_size
        self.labels = sorted(by_label)
        self.by_label = by_label
        self.seed, self.epoch = seed, 0
        self.shuffle = shuffle
        # one draw of P x world_size classes per step when there are enough, else world_size draws of P
        self.groups = 1 if self.p * self.world_size <= len(by_label) else self.world_size

    def set_epoch(self, epoch):
        self.epoch = epoch

    def _all_batches(self):
        """The epoch's global batches (batch_size x world_size items; rank r's share is the r-th slice)."""
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        chunks = {}
        for label in self.labels:
            idx = list(self.by_label[label])
            if self.shuffle:
                rng.shuffle(idx)
            if len(idx) % self.k:  # top the last chunk up from the same class
                idx += list(rng.choice(self.by_label[label], self.k - len(idx) % self.k,
                                       replace=len(self.by_label[label]) < self.k))
            chunks[label] = [idx[i:i + self.k] for i in range(0, len(idx), self.k)]
        batches = []
        per_draw = self.p * self.world_size // self.groups
        while True:
            batch = []
            for _ in range(self.groups):
                available = [label for label in self.labels if chunks[label]]
                if len(available) < per_draw:
                    return batches  # (an incomplete global batch is dropped: every rank runs the same steps)
                weights = np.array([len(chunks[label]) for label in available], np.float64)
                picked = rng.choice(len(available), per_draw, replace=False, p=weights / weights.sum())
                for j in picked:
                    batch += chunks[available[j]].pop()
            batches.append(batch)

    def __iter__(self):
        base = self.epoch * 1_000_000
        step = self.batch_size * self.world_size
        first = self.rank * self.batch_size
        for b, batch in enumerate(self._all_batches()):
            share = batch[first:first + self.batch_size]
            yield [(i, base + b * step + first + j) for j, i in enumerate(share)]

    def __len__(self):
        # the batch count depends on the draw only through how chunks run out; compute it exactly
        return len(self._all_batches())


@SAMPLERS.register("DistributedBatchSampler")
@SAMPLERS.register("BatchSampler")
class PlainBatchSampler:
    CONFIG_SCHEMA = {**_BATCH, **_SUPPLIED}

    def __init__(self, dataset, batch_size, shuffle=False, drop_last=False, seed=0, rank=None, world_size=None,
                 where="DataLoader.sampler"):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"{where}.batch_size must be a positive int, got {batch_size!r}")
        self.n, self.batch_size, self.shuffle, self.drop_last = len(dataset), batch_size, shuffle, drop_last
        self.seed, self.epoch = seed, 0
        self.rank, self.world_size = _rank_and_world(rank, world_size)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        order = np.arange(self.n)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 11]).permutation(self.n)
        order = order[self.rank::self.world_size]
        base = self.epoch * 1_000_000
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            if self.drop_last and len(chunk) < self.batch_size:
                break
            yield [(int(i), base + start + j) for j, i in enumerate(chunk)]

    def __len__(self):
        n = len(range(self.rank, self.n, self.world_size))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
