"""A dataset over PaddleClas list files: one `relpath label [uid]` per line.

Missing images are dropped when the list is read, with one warning each and a count.
An image that exists but cannot be decoded is replaced, at that moment, by another
image of the same class (so P×K batches keep their shape), and its index travels with
the batch (`bad`) so the loader's owner warns once per file and counts them: nothing
crashes mid-epoch, nothing is skipped silently.
"""
import logging
import os

import numpy as np

from ...config import Field
from ...errors import PPShiTuError
from ...registry import SUPPLIED
from ...utils.lists import read_list_lines
from ...utils.image import ImageReadError, read_image
from .transforms import build_transforms

log = logging.getLogger("ppshitu.data")


class ListFileError(PPShiTuError):
    pass


def read_list_file(path, delimiter=None):
    """[(relpath, label, uid or None)] from a `relpath label [uid]` file; errors name the line."""
    rows = []
    # utils/lists.py's rules, as every list reader: UTF-8 (a byte-order mark ignored), blank and `#` comment
    # lines left out, a NUL byte refused; regular files only, at most MAX_LIST_BYTES
    for lineno, line in read_list_lines(path, ListFileError, missing=f"list file not found: {path}"):
        parts = line.split(delimiter)
        if len(parts) not in (2, 3):
            raise ListFileError(f"{path}:{lineno}: expected 'relpath label [uid]', got {line!r}")
        try:
            label = int(parts[1])
            uid = int(parts[2]) if len(parts) == 3 else None
        except ValueError:
            raise ListFileError(f"{path}:{lineno}: label and uid must be integers, got {line!r}") from None
        rows.append((parts[0], label, uid))
    if not rows:
        raise ListFileError(f"{path}: no samples")
    return rows


class ListDataset:
    """`image_root` + `cls_label_path` (PaddleClas's ImageNetDataset / VeriWild keys).

    Items are indexed by an int, or by (index, key) where `key` seeds the augmentation
    (the P×K sampler passes epoch-and-position keys). An item is
    (CHW float32 image, label int64, uid int64 (-1 if none), bad int64 (-1 or the index
    of an undecodable image it replaces)).
    """

    CONFIG_SCHEMA = {"image_root": Field(str), "cls_label_path": Field(str, doc="the `relpath label [uid]` list"),
                     "transform_ops": Field((list, type(None))), "delimiter": Field((str, type(None))),
                     "relabel": Field(bool), "seed": SUPPLIED, "config_path": SUPPLIED}

    def __init__(self, image_root, cls_label_path, transform_ops=None, delimiter=None, relabel=False,
                 seed=0, config_path="dataset"):
        self.image_root, self.list_path = image_root, cls_label_path
        rows = read_list_file(cls_label_path, delimiter)
        present = [r for r in rows if os.path.isfile(os.path.join(image_root, r[0]))]
        self.missing = [r[0] for r in rows if not os.path.isfile(os.path.join(image_root, r[0]))]
        for rel in self.missing:
            log.warning("%s: image not found, skipped: %s", cls_label_path, os.path.join(image_root, rel))
        if self.missing:
            log.warning("%s: %d of %d images missing and skipped", cls_label_path, len(self.missing), len(rows))
        if not present:
            raise ListFileError(f"{cls_label_path}: none of its {len(rows)} images exists under {image_root}")
        self.paths = [os.path.join(image_root, r[0]) for r in present]
        labels = np.array([r[1] for r in present], np.int64)
        if relabel:  # classifier heads need labels 0..C-1; CUB's test classes are 101..200
            self.label_map = {int(v): i for i, v in enumerate(np.unique(labels))}
            labels = np.array([self.label_map[int(v)] for v in labels], np.int64)
        self.labels = labels
        self.uids = np.array([-1 if r[2] is None else r[2] for r in present], np.int64)
        self.has_uids = all(r[2] is not None for r in present)
        self.transform = build_transforms(transform_ops, f"{config_path}.transform_ops")
        self.seed = seed
        self._by_label = {}
        for i, v in enumerate(self.labels):
            self._by_label.setdefault(int(v), []).append(i)

    @property
    def class_num(self):
        return len(self._by_label)

    def __len__(self):
        return len(self.paths)

    def indices_by_label(self):
        return {k: list(v) for k, v in self._by_label.items()}

    def __getitem__(self, item):
        index, key = item if isinstance(item, tuple) else (item, 0)
        rng = np.random.default_rng([self.seed, int(key), int(index)])
        bad, img = -1, None
        candidates = self._by_label[int(self.labels[index])]
        start = candidates.index(index)
        for k in range(len(candidates)):
            i = candidates[(start + k) % len(candidates)]
            try:
                img = read_image(self.paths[i])
                break
            except ImageReadError:
                if bad < 0:
                    bad = index
        if img is None:
            raise ImageReadError(f"{self.list_path}: no image of label {int(self.labels[index])} can be decoded "
                                 f"(first: {self.paths[index]})")
        img = self.transform(img, rng)
        return img, self.labels[index], self.uids[index], np.int64(bad)
