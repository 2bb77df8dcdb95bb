"""The recognition task: train, evaluate and export a RecModel from a TRAIN_SCHEMA config.

    train(cfg) -> history          tools/train.py
    evaluate(cfg) -> metrics       tools/eval.py   (Global.pretrained_model: the weights)
    export(cfg, out_dir) -> dir    tools/export_model.py
"""
import logging
import os

import numpy as np
import paddle
from tqdm import tqdm

from ..data.loader import BadImageReport, build_dataloader
from ..data.transforms import eval_spec
from ..errors import ConfigError
from ..modeling.losses import CombinedLoss
from ..modeling.rec_model import build_rec_model
from . import checkpoint as ckpt
from .metrics import METRICS, check_not_trivial, retrieval_metrics
from .optim import build_optimizer
from .trainer import Trainer, seed_everything

log = logging.getLogger("ppshitu.rec")


def set_device(cfg):
    device = cfg.Global.device
    if device == "gpu" and not paddle.device.is_compiled_with_cuda():
        raise ConfigError("Global.device is gpu, but this paddle build has no CUDA; use -o Global.device=cpu")
    paddle.set_device(device)


def _image_shape(cfg):
    shape = cfg.Global.image_shape
    if len(shape) != 3 or shape[0] != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ConfigError(f"Global.image_shape must be [3, H, W], got {shape!r}")
    return shape


def _eval_sections(cfg):
    eval_cfg = (cfg.get("DataLoader") or {}).get("Eval")
    if not isinstance(eval_cfg, dict) or not {"Query", "Gallery"} <= set(eval_cfg):
        raise ConfigError("DataLoader.Eval needs Query and Gallery sections (the same list for both on CUB)")
    return eval_cfg["Query"], eval_cfg["Gallery"]


def build_model(cfg, class_num=None, with_head=True):
    """The RecModel, with Global.pretrained_model's weights when set (the head is training-only:
    evaluation and export build without it)."""
    model = build_rec_model(cfg.Arch, _image_shape(cfg), class_num=class_num, with_head=with_head)
    if cfg.Global.pretrained_model:
        path = ckpt.load_weights(model, cfg.Global.pretrained_model)
        log.info("loaded weights %s", path)
    return model


def extract(model, loader, desc="features"):
    """(feats [N, D] float32, labels, uids) of a loader; normalized features (RecModel.embed)."""
    model.eval()
    feats, labels, uids = [], [], []
    with paddle.no_grad():
        for batch in tqdm(loader, desc=desc, unit="batch", leave=False):
            feats.append(model.embed(batch["image"]).numpy())
            labels.append(batch["label"].numpy())
            uids.append(batch["uid"].numpy())
    return {"feats": np.concatenate(feats), "labels": np.concatenate(labels), "uids": np.concatenate(uids)}


class RetrievalEvaluator:
    """Query/gallery loaders built once; `__call__(model)` returns the metrics."""

    def __init__(self, cfg, seed=0):
        q_cfg, g_cfg = _eval_sections(cfg)
        self.query_loader, self.query_set = build_dataloader(q_cfg, "DataLoader.Eval.Query", seed)
        self.same = q_cfg == g_cfg
        if self.same:
            self.gallery_loader, self.gallery_set = self.query_loader, self.query_set
        else:
            self.gallery_loader, self.gallery_set = build_dataloader(g_cfg, "DataLoader.Eval.Gallery", seed)
        check_not_trivial(self.query_set.paths, self.gallery_set.paths, self.query_set.uids, self.gallery_set.uids)
        self.metrics = METRICS.build_list(cfg.Metric.Eval or [{"Recallk": {"topk": [1, 5]}}, {"mAP": {}}],
                                          "Metric.Eval")

    def __call__(self, model):
        query = extract(model, self.query_loader, "query features")
        gallery = query if self.same else extract(model, self.gallery_loader, "gallery features")
        return retrieval_metrics(self.metrics, query, gallery)


def train(cfg, hooks=()):
    """Train; `hooks` are extra Trainer hooks (e.g. a time budget). Returns the history."""
    set_device(cfg)
    g = cfg.Global
    seed_everything(g.seed or 0)
    loader, dataset = build_dataloader((cfg.get("DataLoader") or {}).get("Train"), "DataLoader.Train", g.seed or 0,
                                       train=True)
    model = build_model(cfg, class_num=dataset.class_num)
    head_classes = getattr(model.head, "class_num", None)
    if head_classes is not None and head_classes < dataset.class_num:
        raise ConfigError(f"Arch.Head.class_num is {head_classes}, but DataLoader.Train has {dataset.class_num} "
                          f"classes; set it to {dataset.class_num} or leave it out")
    losses = CombinedLoss(cfg.Loss.Train, "Loss.Train")
    steps = min(len(loader), g.max_iters_per_epoch or len(loader))
    optimizer, scheduler = build_optimizer(cfg.Optimizer, model.parameters(), g.epochs, steps)
    bad = BadImageReport(dataset)

    def loss_fn(net, batch):
        bad.add(batch["bad"].numpy())
        return losses(net(batch["image"], batch["label"]), batch["label"])

    class BadImageSummary:
        def after_epoch(self, trainer):
            bad.summary()

    evaluator = RetrievalEvaluator(cfg, g.seed or 0) if g.eval_during_train else None
    amp = cfg.AMP
    out_dir = os.path.join(g.output_dir, cfg.Arch.get("name", "RecModel"))
    trainer = Trainer(model, loss_fn, optimizer, loader, lr_scheduler=scheduler, evaluate_fn=evaluator,
                      key_metric="recall1" if evaluator else None, epochs=g.epochs, output_dir=out_dir,
                      eval_interval=g.eval_interval, start_eval_epoch=g.start_eval_epoch,
                      save_interval=g.save_interval, print_batch_step=g.print_batch_step,
                      max_iters_per_epoch=g.max_iters_per_epoch, seed=g.seed, use_amp=amp.use_amp,
                      amp_level=amp.level, scale_loss=amp.scale_loss,
                      use_dynamic_loss_scaling=amp.use_dynamic_loss_scaling, hooks=[BadImageSummary(), *hooks], config=cfg,
                      eval_before_train=True)
    if g.checkpoints:
        trainer.resume(g.checkpoints)
    return trainer.train()


def evaluate(cfg):
    set_device(cfg)
    if not cfg.Global.pretrained_model:
        log.warning("Global.pretrained_model is not set: evaluating a randomly initialised network")
    metrics = RetrievalEvaluator(cfg, cfg.Global.seed or 0)(build_model(cfg, with_head=False))
    log.info("eval: %s", ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in metrics.items()))
    return metrics


def preprocessing_spec(cfg):
    """The eval transform's size/interpolation/normalization, identical for Query and Gallery."""
    from ..data.transforms import build_transforms
    q_cfg, g_cfg = _eval_sections(cfg)
    specs = []
    for name, section in (("Query", q_cfg), ("Gallery", g_cfg)):
        where = f"DataLoader.Eval.{name}.dataset.transform_ops"
        ops = (section.get("dataset") or {}).get("transform_ops")
        specs.append(eval_spec(build_transforms(ops, where), where))
    if specs[0] != specs[1]:
        raise ConfigError(f"DataLoader.Eval: Query and Gallery preprocess differently ({specs[0]} vs {specs[1]}); "
                          f"an exported model has one preprocessing")
    h, w = specs[0]["input_size"]
    if list(_image_shape(cfg)[1:]) != [h, w]:
        raise ConfigError(f"Global.image_shape {cfg.Global.image_shape} differs from the eval ResizeImage "
                          f"size (H, W) = {[h, w]}")
    return specs[0]


def export(cfg, out_dir=None):
    from .export import export_rec
    return export_rec(cfg, out_dir or cfg.Global.save_inference_dir)
