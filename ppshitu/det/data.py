"""Detection loaders built from `DataLoader.Train` / `DataLoader.Eval`.

    DataLoader:
      Train:
        dataset: {name: CocoDetDataset, anno_path: ..., image_root: null, to_foreground: true,
                  allow_empty: false,
                  transform_ops: [{RandomCrop: {}}, {RandomFlip: {prob: 0.5}}, {RandomDistort: {}}],
                  batch_transform_ops: [{BatchRandomResize: {target_size: [256, 288, 320]}}]}
        sampler: {batch_size: 16, shuffle: true, drop_last: true}
        loader: {num_workers: 2}
      Eval:
        dataset: {name: CocoDetDataset, anno_path: ..., transform_ops: <PP-ShiTu DetPreProcess ops>}
        sampler: {batch_size: 8}

The Eval `transform_ops` (DetResize / DetNormalizeImage / DetPermute) are the model's
preprocessing: evaluation, the exported inference.yml and the training batches'
normalisation all come from them, so they cannot disagree.
A training batch depends only on (seed, epoch, batch index): resuming replays it.
"""
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..config import Field, validate
from ..errors import ConfigError
from ..infer.det import DetPreprocess
from ..schemas import MAX_THREADS
from ..utils.image import ImageReadError, read_image
from .coco import load_coco
from .transforms import BATCH_TRANSFORMS, SAMPLE_TRANSFORMS

log = logging.getLogger(__name__)

DATASET_SCHEMA = {
    "name": Field(str, "CocoDetDataset", choices=("CocoDetDataset",)),
    "anno_path": Field(str),
    "image_root": Field((str, type(None)), None, doc="default: <json dir>/images, else the json's dir"),
    "to_foreground": Field(bool, True, doc="map every category to the one class 'foreground'"),
    "allow_empty": Field(bool, False, doc="train on images without boxes too (as negatives)"),
    "transform_ops": Field((list, type(None)), None),
    "batch_transform_ops": Field((list, type(None)), None),
}
SAMPLER_SCHEMA = {
    "name": Field(str, "BatchSampler", doc="accepted for PaddleClas compatibility"),
    "batch_size": Field(int, 8, min_value=1),
    "shuffle": Field(bool, True),
    "drop_last": Field(bool, True),
}
LOADER_SCHEMA = {
    "num_workers": Field(int, 2, min_value=0, max_value=MAX_THREADS,
                         doc="threads decoding and augmenting images (0: 1; at most MAX_THREADS, 1024)"),
    "use_shared_memory": Field(bool, False, doc="accepted for PaddleClas compatibility"),
}
SECTION_SCHEMA = {"dataset": DATASET_SCHEMA, "sampler": SAMPLER_SCHEMA, "loader": LOADER_SCHEMA}


def section(cfg, mode):
    """The validated DataLoader.<mode> section."""
    loader_cfg = (cfg.get("DataLoader") or {}).get(mode)
    if not isinstance(loader_cfg, dict):
        raise ConfigError(f"DataLoader.{mode}: missing; a detector needs DataLoader.{mode}.dataset.anno_path")
    return validate(loader_cfg, SECTION_SCHEMA, source="config", path=f"DataLoader.{mode}")


def model_preprocess(cfg):
    """The model's DetPreprocess, from DataLoader.Eval.dataset.transform_ops."""
    where = "DataLoader.Eval.dataset.transform_ops"
    pre = DetPreprocess.from_transform_ops(section(cfg, "Eval")["dataset"]["transform_ops"], where)
    if pre.keep_ratio:  # batches and the exported input need one fixed size
        raise ConfigError(f"{where}: DetResize needs keep_ratio: false (the detector is exported at a fixed size)")
    return pre


_SAMPLE, _ORDER, _BATCH = range(3)  # independent random streams


def _rng(seed, stream, *index):
    return np.random.default_rng([int(seed or 0), stream, *map(int, index)])


class DetTrainLoader:
    """Iterate one epoch of augmented, multi-scale, padded batches (numpy dicts):
    image [B,3,H,W] f32, gt_bbox [B,M,4] f32, gt_class [B,M,1] i64, pad_gt_mask [B,M,1] f32,
    im_id [B,1] i64; M >= 1 (ppdet's assigners fail on M == 0)."""

    def __init__(self, cfg, seed=0):
        sec = section(cfg, "Train")
        ds, smp = sec["dataset"], sec["sampler"]
        self.coco = load_coco(ds["anno_path"], ds["image_root"], ds["to_foreground"], keep_empty=ds["allow_empty"])
        self.records = self.coco.records
        self.transforms = SAMPLE_TRANSFORMS.build_list(ds["transform_ops"], "DataLoader.Train.dataset.transform_ops")
        self.batch_transforms = BATCH_TRANSFORMS.build_list(ds["batch_transform_ops"],
                                                            "DataLoader.Train.dataset.batch_transform_ops")
        self.preprocess = model_preprocess(cfg)
        self.batch_size, self.shuffle, self.drop_last = smp["batch_size"], smp["shuffle"], smp["drop_last"]
        if self.drop_last and len(self.records) < self.batch_size:
            raise ConfigError(f"DataLoader.Train.sampler.batch_size: {self.batch_size} is more than the "
                              f"{len(self.records)} training images in {ds['anno_path']}")
        self.num_workers, self.seed, self.epoch = sec["loader"]["num_workers"], seed, 0
        self.skipped_images = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        n = len(self.records) // self.batch_size
        return n if self.drop_last or len(self.records) % self.batch_size == 0 else n + 1

    def _sample(self, index):
        rec = self.records[index]
        try:
            image = read_image(rec.path)
        except ImageReadError as e:
            log.warning("skipping %s", e)
            self.skipped_images += 1
            return None
        sample = {"image": image, "boxes": rec.boxes * _fit(rec, image), "classes": rec.classes,
                  "im_id": rec.image_id}
        rng = _rng(self.seed, _SAMPLE, self.epoch, index)
        for t in self.transforms:
            sample = t(sample, rng)
        return sample

    def __iter__(self):
        order = (_rng(self.seed, _ORDER, self.epoch).permutation(len(self.records)) if self.shuffle
                 else np.arange(len(self.records)))
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        self.skipped_images = 0
        with ThreadPoolExecutor(max(1, self.num_workers)) as pool:
            for b, idx in enumerate(batches):
                samples = [s for s in pool.map(self._sample, idx) if s is not None]
                if not samples:
                    continue
                rng = _rng(self.seed, _BATCH, self.epoch, b)
                for t in self.batch_transforms:
                    samples = t(samples, rng)
                yield self._collate(samples)
        if self.skipped_images:
            log.warning("%s: %d unreadable images skipped this epoch", self.coco.json_path, self.skipped_images)

    def _collate(self, samples):
        if len({s["image"].shape for s in samples}) != 1:
            raise ConfigError("DataLoader.Train.dataset.batch_transform_ops: images of a batch differ in size; "
                              "add BatchRandomResize")
        images = np.stack([self.preprocess.normalize(s["image"]) for s in samples])
        m = max(1, max(len(s["boxes"]) for s in samples))
        n = len(samples)
        gt_bbox, gt_class = np.zeros((n, m, 4), np.float32), np.zeros((n, m, 1), np.int64)
        mask = np.zeros((n, m, 1), np.float32)
        for i, s in enumerate(samples):
            k = len(s["boxes"])
            gt_bbox[i, :k], gt_class[i, :k, 0], mask[i, :k] = s["boxes"], s["classes"], 1.0
        return {"image": images, "gt_bbox": gt_bbox, "gt_class": gt_class, "pad_gt_mask": mask,
                "im_id": np.array([[s["im_id"]] for s in samples], np.int64)}


def _fit(rec, image):
    """Boxes are in the json's width/height; rescale if the file on disk differs."""
    h, w = image.shape[:2]
    if (w, h) == (rec.width, rec.height):
        return np.float32(1.0)
    log.warning("%s: image is %dx%d but the annotations say %dx%d; rescaling its boxes", rec.path, w, h,
                rec.width, rec.height)
    return np.float32([w / rec.width, h / rec.height, w / rec.width, h / rec.height])


class DetEvalLoader:
    """Batches of preprocessed validation images: image, im_shape, scale_factor, im_id."""

    def __init__(self, cfg, json_path=None):
        sec = section(cfg, "Eval")
        ds = sec["dataset"]
        self.json_path = json_path or ds["anno_path"]
        self.coco = load_coco(self.json_path, ds["image_root"] if json_path is None else None, ds["to_foreground"],
                              keep_empty=True)
        self.preprocess = model_preprocess(cfg)
        self.batch_size, self.num_workers = sec["sampler"]["batch_size"], sec["loader"]["num_workers"]

    def __len__(self):
        return -(-len(self.coco.records) // self.batch_size)

    def _load(self, rec):
        return self.preprocess(read_image(rec.path))

    def __iter__(self):
        recs = self.coco.records
        with ThreadPoolExecutor(max(1, self.num_workers)) as pool:
            for i in range(0, len(recs), self.batch_size):
                chunk = recs[i:i + self.batch_size]
                items = list(pool.map(self._load, chunk))
                yield {"image": np.stack([it[0] for it in items]), "im_shape": np.stack([it[1] for it in items]),
                       "scale_factor": np.stack([it[2] for it in items]),
                       "im_id": np.array([r.image_id for r in chunk], np.int64)}
