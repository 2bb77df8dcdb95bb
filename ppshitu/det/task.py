"""The detector behind tools/train.py, tools/eval.py and tools/export_model.py
(they dispatch here on `Arch.name: PicoDet`):

    train(cfg) -> history        evaluate(cfg) -> {"mAP", "AP50", "AP75"}        export(cfg, out_dir)

Training runs the shared trainer (checkpoints latest / best_model / epoch_N, exact
resume from Global.checkpoints, best model by the COCOMetric's best_key, AP50 by
default) with an EMA hook; evaluation and export use the EMA weights when present.
"""
import logging

import paddle

from .. import weights
from ..engine.hooks import EMAHook, HookBase, ModelEMA, load_for_inference
from ..engine.optim import build_optimizer
from ..engine.task import Task
from ..engine.trainer import Trainer
from ..errors import ConfigError
from ..registry import split_spec
from .data import DetEvalLoader, DetTrainLoader, model_preprocess
from .metrics import evaluate_detector

log = logging.getLogger("ppshitu.det")
METRIC_KEYS = ("mAP", "AP50", "AP75")


def _check_arch(cfg):
    arch = cfg.get("Arch")
    if not isinstance(arch, dict) or arch.get("name") != "PicoDet":
        raise ConfigError(f"Arch.name: the detector task needs PicoDet, got {(arch or {}).get('name')!r}")
    return arch


def build_model(cfg, for_training=False):
    """The PicoDetModel of `cfg`; with `for_training`, initialised from Arch.pretrained
    (backbone) and Global.pretrained_model (whole model) when given."""
    from .model import build_model as build  # imports ppdet: only when a model is built

    arch = _check_arch(cfg)
    seed = cfg.Global.get("seed")
    if seed is not None:
        paddle.seed(seed)  # the same config builds the same initial weights
    model = build(arch)
    if for_training:
        if arch.get("pretrained"):
            weights.load_into(model.backbone, arch["pretrained"], "Arch.pretrained", strict=False)
        if cfg.Global.get("pretrained_model"):
            weights.load_into(model, cfg.Global.pretrained_model, "Global.pretrained_model", strict=False)
    return model


def best_key(cfg):
    """The metric that picks best_model: Metric.Eval[COCOMetric].best_key (AP50 by default)."""
    key = "AP50"
    for i, spec in enumerate((cfg.get("Metric") or {}).get("Eval") or []):
        name, kw = split_spec(spec, f"Metric.Eval[{i}]")
        if name != "COCOMetric":
            raise ConfigError(f"Metric.Eval[{i}]: a detector is scored by COCOMetric, got {name!r}")
        if set(kw) - {"best_key"}:
            raise ConfigError(f"Metric.Eval[{i}].COCOMetric: unknown keys {sorted(set(kw) - {'best_key'})}; "
                              f"valid: best_key")
        key = kw.get("best_key", key)
    if key not in METRIC_KEYS:
        raise ConfigError(f"Metric.Eval.COCOMetric.best_key must be one of {list(METRIC_KEYS)}, got {key!r}")
    return key


def _ema_decay(cfg):
    ema = cfg.get("EMA")
    if not ema:
        return None
    if set(ema) - {"decay"}:
        raise ConfigError(f"EMA: unknown keys {sorted(set(ema) - {'decay'})}; valid: decay")
    return float(ema.get("decay", 0.9998))


class _EpochHook(HookBase):
    """Tells the loader and the loss which epoch runs (ppdet's head switches assigner by epoch)."""

    def __init__(self, loader):
        self.loader, self.epoch = loader, 0

    def before_epoch(self, trainer):
        self.epoch = trainer.epoch  # 0-based index of the running epoch
        self.loader.set_epoch(self.epoch)


def train(cfg, hooks=()):
    g = cfg.Global
    if g.image_size_schedule:
        raise ConfigError("Global.image_size_schedule: recognition training only (PicoDet's loader picks its "
                          "sizes from its own Batch* transforms); leave it out")
    model = build_model(cfg, for_training=True)
    loader = DetTrainLoader(cfg, seed=g.seed)
    eval_loader = DetEvalLoader(cfg) if g.eval_during_train else None
    steps = min(len(loader), g.max_iters_per_epoch or len(loader))
    optimizer, scheduler = build_optimizer(dict(cfg.Optimizer), model.parameters(), g.epochs, steps)
    epoch_hook = _EpochHook(loader)
    hooks = [epoch_hook, *hooks]
    evaluate_fn = (lambda m: evaluate_detector(m, eval_loader)) if eval_loader is not None else None
    decay = _ema_decay(cfg)
    if decay is not None:
        ema_hook = EMAHook(ModelEMA(model, decay))
        hooks.append(ema_hook)
        if evaluate_fn is not None:
            evaluate_fn = ema_hook.evaluate_with_average(evaluate_fn)

    def loss_fn(m, batch):
        return m.losses({k: paddle.to_tensor(v) for k, v in batch.items()}, epoch_hook.epoch)

    trainer = Trainer.from_config(cfg, model, loss_fn, optimizer, loader, lr_scheduler=scheduler,
                                  evaluate_fn=evaluate_fn, key_metric=best_key(cfg), hooks=hooks)
    return trainer.train()


def _trained_model(cfg):
    path = cfg.Global.get("pretrained_model")
    if not path:
        raise ConfigError("Global.pretrained_model: give the trained weights, e.g. "
                          "-o Global.pretrained_model=output/det_demo/best_model")
    model = build_model(cfg)
    load_for_inference(model, path)
    return model


def evaluate(cfg):
    """COCO AP of Global.pretrained_model on DataLoader.Eval."""
    metrics = evaluate_detector(_trained_model(cfg), DetEvalLoader(cfg))
    log.info("COCO box AP: %s", ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return metrics


def export(cfg, out_dir=None):
    """Write the inference directory (program, params, inference.yml) to `out_dir`."""
    from .export import export_detector

    out_dir = out_dir or cfg.Global.save_inference_dir
    model = _trained_model(cfg)
    labels = DetEvalLoader(cfg).coco.label_list
    if len(labels) != model.num_classes:
        raise ConfigError(f"Arch.class_num is {model.num_classes} but DataLoader.Eval's annotations give "
                          f"{len(labels)} classes {labels}")
    spec = export_detector(model, out_dir, model_preprocess(cfg), labels, cfg.Global.export_format,
                           openvino_ir=cfg.Global.export_openvino)
    log.info("exported the detector to %s (input %s)", out_dir, spec["input_size"])
    return spec


TASK = Task("detection", train, evaluate, export, eval_mode="detection")  # ppshitu/tasks.py: Arch.name PicoDet
