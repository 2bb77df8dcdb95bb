"""Captioned images for the text-image model: a JSON-lines list (dataset/captions.py writes them; any folder of
one's own captioned images can be listed the same way), their preprocessing and their batches.

    DataLoader.Train.dataset: {name: CaptionList, list_path: ./data/clip/train.jsonl,
                               transform_ops: [{ResizeImage: {size: 96}}, {NormalizeImage: {...}}, {ToCHWImage: {}}]}

One line per image: {"image": path relative to the list's folder, "combo": int (images of one combo share their
captions' meaning: in-batch positives), "captions": [one or more strings]}. Training draws one caption of each
image per step.
"""
import json
import os

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError
from ..infer.preprocess import RecPreprocess
from ..utils.files import read_input_text
from ..utils.image import read_image

_DATASET_KEYS = ("name", "list_path", "transform_ops")
_SAMPLER_KEYS = ("batch_size", "shuffle", "drop_last")


def _row(line, where):
    try:
        row = json.loads(line)
    except ValueError as e:
        raise ConfigError(f"{where}: not JSON ({e})") from None
    caps = row.get("captions") if isinstance(row, dict) else None
    if not isinstance(row, dict) or not isinstance(row.get("image"), str) or \
            isinstance(row.get("combo"), bool) or not isinstance(row.get("combo"), int) or \
            not isinstance(caps, list) or not caps or not all(isinstance(c, str) and c.strip() for c in caps):
        raise ConfigError(f"{where}: expected {{\"image\": str, \"combo\": int, \"captions\": [non-empty str, ...]}},"
                          f" got {line.strip()[:200]!r}")
    return row


class CaptionList:
    """The images (absolute paths), their combos and their captions, from a `DataLoader.*.dataset` section."""

    def __init__(self, section, where):
        ds = (section or {}).get("dataset") if isinstance(section, dict) else None
        if not isinstance(ds, dict) or ds.get("name") != "CaptionList" or not ds.get("list_path"):
            raise ConfigError(f"{where}.dataset: expected {{name: CaptionList, list_path: ..., transform_ops: "
                              f"[...]}}, got {ds!r}")
        unknown = sorted(set(ds) - set(_DATASET_KEYS))
        if unknown:
            raise ConfigError(f"{where}.dataset: unknown keys {unknown}; valid: {', '.join(_DATASET_KEYS)}")
        path = ds["list_path"]
        if not os.path.isfile(path):
            raise ConfigError(f"{where}.dataset.list_path: {path} is not a file (python dataset/make_synthetic.py "
                              f"captions --out data/clip writes one)")
        root = os.path.dirname(os.path.abspath(path))
        text = read_input_text(path, "caption list", 256 << 20, ConfigError)  # regular files only (utils/files.py)
        rows = [_row(line, f"{path}:{i}") for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        if not rows:
            raise ConfigError(f"{where}.dataset.list_path: {path} lists no image")
        self.list_path = path
        self.paths = [os.path.join(root, r["image"]) for r in rows]
        self.combos = np.array([r["combo"] for r in rows], dtype=np.int64)
        self.captions = [r["captions"] for r in rows]
        self.preprocess = RecPreprocess.from_transform_ops(ds.get("transform_ops"), f"{where}.dataset.transform_ops")
        sampler = section.get("sampler") or {}
        unknown = sorted(set(sampler) - set(_SAMPLER_KEYS))
        if unknown:
            raise ConfigError(f"{where}.sampler: unknown keys {unknown}; valid: {', '.join(_SAMPLER_KEYS)}")
        self.batch_size = sampler.get("batch_size", 64)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ConfigError(f"{where}.sampler.batch_size must be an int >= 2 (in-batch negatives), "
                              f"got {self.batch_size!r}")
        self.shuffle, self.drop_last = bool(sampler.get("shuffle", True)), bool(sampler.get("drop_last", True))

    def __len__(self):
        return len(self.paths)

    def images(self, idx):
        """float32 [len(idx), 3, H, W], preprocessed."""
        return np.stack([self.preprocess(read_image(self.paths[i])) for i in idx])

    def eval_captions(self):
        """(the first caption of each combo, in first-seen order; the combo ids)."""
        seen = {}
        for combo, caps in zip(self.combos.tolist(), self.captions):
            seen.setdefault(combo, caps[0])
        return list(seen.values()), np.array(list(seen), dtype=np.int64)


def backbone_features(tower, data, batch_size=64, desc="image features"):
    """The image tower's backbone features of every image [N, C] (no gradient)."""
    import paddle

    out = []
    with paddle.no_grad():
        for s in tqdm(range(0, len(data), batch_size), desc=desc, unit="batch", leave=False):
            x = paddle.to_tensor(data.images(range(s, min(s + batch_size, len(data)))))
            out.append(tower.features(x).numpy())
    return np.concatenate(out)


class CaptionBatches:
    """The training batches: {"features" or "image", "input_ids", "label"}, one random caption per image.
    Order and caption draws use numpy's global generator, which the trainer seeds per epoch."""

    def __init__(self, data, tokenizer, features=None):
        self.data, self.features = data, features
        width = max(len(c) for c in data.captions)
        # [N, captions, L]: every caption tokenized once; an image with fewer captions repeats its own
        self.ids = np.stack([tokenizer.encode([caps[i % len(caps)] for i in range(width)]).ids for caps in data.captions])
        self.counts = np.array([len(c) for c in data.captions])

    def __len__(self):
        n, b = len(self.data), self.data.batch_size
        return n // b if self.data.drop_last else -(-n // b)

    def __iter__(self):
        import paddle

        n, b = len(self.data), self.data.batch_size
        order = np.random.permutation(n) if self.data.shuffle else np.arange(n)
        for s in range(0, len(self) * b, b):
            idx = order[s:s + b]
            pick = (np.random.random(len(idx)) * self.counts[idx]).astype(np.int64)
            # the image side first: the trainer counts a batch's images by its first entry
            if self.features is not None:
                batch = {"features": paddle.to_tensor(self.features[idx])}
            else:
                batch = {"image": paddle.to_tensor(self.data.images(idx))}
            batch.update(input_ids=paddle.to_tensor(self.ids[idx, pick]), label=paddle.to_tensor(self.data.combos[idx]))
            yield batch
