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

from ..engine import backbones
from ..engine import checkpoint as ckpt
from ..engine.hooks import HookBase
from ..engine.optim import build_optimizer
from ..engine.task import Task
from ..engine.trainer import Trainer, seed_everything
from ..errors import ConfigError
from ..registry import split_spec
from . import export as rec_export
from .data.loader import BadImageReport, build_dataloader
from .data.transforms import build_transforms, eval_spec
from .losses import CombinedLoss
from .metrics import METRICS, check_not_trivial, retrieval_metrics
from .model import build_rec_model
from .size_schedule import SizeScheduleHook

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


def train_accuracy_fn(specs, model):
    """Metric.Train ([{TopkAcc: {topk: [1, 5]}}]) -> fn(outputs, labels) -> {"top1": ..., ...}: the
    head's accuracy on each training batch, logged beside the loss terms (needs an Arch.Head)."""
    topks = []
    for i, spec in enumerate(specs or []):
        name, kw = split_spec(spec, f"Metric.Train[{i}]")
        if name != "TopkAcc" or set(kw) - {"topk"}:
            raise ConfigError(f"Metric.Train[{i}]: only TopkAcc {{topk: [1, 5]}} is a training metric, got "
                              f"{name} {sorted(kw)}")
        topk = kw.get("topk", [1, 5])
        topks += topk if isinstance(topk, list) else [topk]
    if topks and model.head is None:
        raise ConfigError("Metric.Train: TopkAcc scores the classifier head, but Arch has no Head")

    def accuracy(outputs, labels):
        if not topks:
            return {}
        labels = paddle.reshape(labels, [-1, 1])
        return {f"top{k}": paddle.metric.accuracy(outputs["logits"].detach(), labels, k=k) for k in topks}
    return accuracy


def train(cfg, hooks=()):
    """Train; `hooks` are extra Trainer hooks (e.g. a time budget). Returns the history."""
    set_device(cfg)
    g = cfg.Global
    if g.eval_during_train:
        preprocessing_spec(cfg)  # an eval pipeline that cannot be exported fails now, not after training
    seed_everything(g.seed or 0)
    loader, dataset = build_dataloader((cfg.get("DataLoader") or {}).get("Train"), "DataLoader.Train", g.seed or 0,
                                       train=True)
    model = build_model(cfg, class_num=dataset.class_num)
    head_classes = getattr(model.head, "class_num", None)
    if head_classes is not None and head_classes < dataset.class_num:
        raise ConfigError(f"Arch.Head.class_num is {head_classes}, but DataLoader.Train has {dataset.class_num} "
                          f"classes; set it to {dataset.class_num} or leave it out")
    losses = CombinedLoss(cfg.Loss.Train, "Loss.Train")
    train_metrics = train_accuracy_fn(cfg.Metric.Train, model)
    steps = min(len(loader), g.max_iters_per_epoch or len(loader))
    # a loss with parameters of its own (a learnable temperature) is optimised and checkpointed too
    params = [p for _, p in ckpt.trained_parameters(model, losses) if not p.stop_gradient]
    optimizer, scheduler = build_optimizer(cfg.Optimizer, params, g.epochs, steps)
    bad = BadImageReport(dataset)

    def loss_fn(net, batch):
        bad.add(batch["bad"].numpy())
        outputs = net(batch["image"], batch["label"])
        terms = losses(outputs, batch["label"])
        terms.update(train_metrics(outputs, batch["label"]))
        return terms

    class BadImageSummary(HookBase):
        def after_epoch(self, trainer):
            bad.summary()

    if g.image_size_schedule:  # smaller images for the first epochs (evaluation stays at image_shape)
        hooks = [SizeScheduleHook(g.image_size_schedule, dataset.transform, g.epochs), *hooks]
    evaluator = RetrievalEvaluator(cfg, g.seed or 0) if g.eval_during_train else None
    out_dir = os.path.join(g.output_dir, cfg.Arch.get("name", "RecModel"))
    trainer = Trainer.from_config(cfg, model, loss_fn, optimizer, loader, output_dir=out_dir,
                                  lr_scheduler=scheduler, evaluate_fn=evaluator,
                                  key_metric="recall1" if evaluator else None, hooks=[BadImageSummary(), *hooks],
                                  eval_before_train=True, loss_module=losses)
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
    q_cfg, g_cfg = _eval_sections(cfg)
    specs = []
    for name, section in (("Query", q_cfg), ("Gallery", g_cfg)):
        where = f"DataLoader.Eval.{name}.dataset.transform_ops"
        ops = (section.get("dataset") or {}).get("transform_ops")
        specs.append(eval_spec(build_transforms(ops, where), where))
    if specs[0] != specs[1]:
        raise ConfigError(f"DataLoader.Eval: Query and Gallery preprocess differently ({specs[0]} vs {specs[1]}); "
                          f"an exported model has one preprocessing")
    bb_name, bb_kwargs = split_spec(cfg.Arch["Backbone"], "Arch.Backbone")
    if bb_kwargs.get("pretrained"):
        backbones.check_preprocess(bb_name, specs[0], "DataLoader.Eval.Query.dataset.transform_ops")
    h, w = specs[0]["input_size"]
    if list(_image_shape(cfg)[1:]) != [h, w]:
        raise ConfigError(f"Global.image_shape {cfg.Global.image_shape} differs from the eval ResizeImage "
                          f"size (H, W) = {[h, w]}")
    return specs[0]


def export(cfg, out_dir=None):
    """Write the inference directory (program, weights, inference.yml); returns it."""
    out_dir = out_dir or cfg.Global.save_inference_dir
    if not cfg.Global.pretrained_model:
        raise ConfigError("Global.pretrained_model is required to export, e.g. "
                          "-o Global.pretrained_model=output/RecModel/best_model")
    pre = preprocessing_spec(cfg)  # fail on an unexportable pipeline before any work
    legacy = cfg.Global.export_format == "legacy"
    rec_export.clear_program(out_dir)
    if legacy and rec_export.pir_enabled():
        embedding_size = rec_export.export_in_child(cfg, out_dir)
    else:
        embedding_size = rec_export.save_program(build_model(cfg, with_head=False), out_dir, _image_shape(cfg))
    spec = rec_export.write_rec_spec(out_dir, embedding_size, "legacy" if legacy else "pir", pre,
                                     backbone=split_spec(cfg.Arch["Backbone"], "Arch.Backbone")[0])
    if cfg.Global.export_openvino:
        from ..infer.openvino_runtime import write_ir
        write_ir(out_dir)
    log.info("exported %s (%s, embedding %d, fingerprint %s)", out_dir, spec["format"], embedding_size,
             spec["fingerprint"])
    return out_dir


TASK = Task("recognition", train, evaluate, export, eval_mode="retrieval")  # ppshitu/tasks.py: Arch.name RecModel


def _export_legacy_main(argv):
    """Child of `export_in_child`, started with FLAGS_enable_pir_api=0: prints the embedding size."""
    from ..config import load_config
    from ..schemas import TRAIN_SCHEMA
    cfg = load_config(argv[0], (), TRAIN_SCHEMA)
    print(rec_export.save_program(build_model(cfg, with_head=False), argv[1], _image_shape(cfg)))


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] != ["--export-legacy"] or len(sys.argv) != 4:
        sys.exit("usage: python -m ppshitu.rec.task --export-legacy CONFIG OUT_DIR")
    _export_legacy_main(sys.argv[2:])
