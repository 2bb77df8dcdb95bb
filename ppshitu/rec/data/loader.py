"""Data loaders from PaddleClas's `DataLoader` sections:

    DataLoader.Train: {dataset: {name, image_root, cls_label_path, transform_ops, relabel},
                       sampler: {name: PKSampler, batch_size, num_instances, ...},
                       loader: {num_workers, use_shared_memory}}

A batch is a dict {"image": float32 NCHW, "label": int64 [N], "uid": int64 [N],
"bad": int64 [N]} ("bad": -1, or the index of an undecodable image replaced by
another of its class; `BadImageReport` warns once per file and counts them).
"""
import logging

import numpy as np
import paddle

from ...config import Field, validate
from ...errors import ConfigError
from ...registry import Registry, split_spec
from ...schemas import MAX_THREADS
from .dataset import ListDataset
from .sampler import SAMPLERS

log = logging.getLogger("ppshitu.data")

DATASETS = Registry("dataset")
for _name in ("ListDataset", "ImageNetDataset", "VeriWild", "LogoDataset", "CompCars"):
    DATASETS.register(_name)(ListDataset)


# DataLoader.*.loader
LOADER_SCHEMA = {
    "num_workers": Field(int, 0, min_value=0, max_value=MAX_THREADS,
                         doc="worker processes decoding and augmenting images (0: in the training process)"),
    "use_shared_memory": Field(bool, True),
}


def collate(items):
    images, labels, uids, bad = zip(*items)
    return {"image": np.stack(images).astype(np.float32), "label": np.array(labels, np.int64),
            "uid": np.array(uids, np.int64), "bad": np.array(bad, np.int64)}


def _section(cfg, key, where):
    value = cfg.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.{key} is required (a mapping), got {value!r}")
    return value


def build_dataset(section, where, seed=0, relabel=False):
    name, kwargs = split_spec(_section(section, "dataset", where), f"{where}.dataset")
    kwargs = dict(kwargs)
    kwargs.setdefault("relabel", relabel)
    return DATASETS.build(name, kwargs, where=f"{where}.dataset", seed=seed, config_path=f"{where}.dataset")


def build_dataloader(section, where, seed=0, train=False, rank=None, world_size=None):
    """(DataLoader, dataset) for one `DataLoader.*` section. Evaluation loaders always read
    the whole data set in one process (rank 0 evaluates)."""
    if not isinstance(section, dict):
        raise ConfigError(f"{where} is required (a mapping with dataset, sampler, loader), got {section!r}")
    unknown = sorted(set(section) - {"dataset", "sampler", "loader"})
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; valid: dataset, sampler, loader")
    loader_cfg = section.get("loader")  # checked first: nothing is read for a config that cannot run
    if loader_cfg is not None and not isinstance(loader_cfg, dict):
        raise ConfigError(f"{where}.loader must be a mapping (num_workers, use_shared_memory), got {loader_cfg!r}")
    loader_cfg = validate(loader_cfg or {}, LOADER_SCHEMA, source="config", path=f"{where}.loader")
    dataset = build_dataset(section, where, seed, relabel=train)
    s_name, s_kwargs = split_spec(_section(section, "sampler", where), f"{where}.sampler")
    if not train:
        rank, world_size = 0, 1
    sampler = SAMPLERS.build(s_name, s_kwargs, where=f"{where}.sampler", dataset=dataset, seed=seed, rank=rank,
                             world_size=world_size)
    loader = paddle.io.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                  num_workers=loader_cfg["num_workers"],
                                  use_shared_memory=loader_cfg["use_shared_memory"],
                                  return_list=True)
    return loader, dataset


class BadImageReport:
    """Collects the `bad` indices of batches: one warning per file, a count at the end."""

    def __init__(self, dataset):
        self.dataset, self.seen = dataset, set()

    def add(self, bad):
        for i in np.asarray(bad).reshape(-1):
            if i >= 0 and int(i) not in self.seen:
                self.seen.add(int(i))
                log.warning("cannot decode image, replaced by another of its class: %s", self.dataset.paths[int(i)])

    def summary(self):
        if self.seen:
            log.warning("%s: %d undecodable image(s) skipped", self.dataset.list_path, len(self.seen))
        return len(self.seen)
