"""The text-image task (`Arch.name: ClipModel`, configs/clip/): train, evaluate and export a two-tower model.

    train(cfg) -> history            tools/train.py     (epoch 0 in the history: the untrained model)
    evaluate(cfg) -> metrics         tools/eval.py      (Global.pretrained_model: the weights)
    export(cfg, out_dir) -> dir      tools/export_model.py (image_encoder.onnx, text_encoder.onnx, tokenizer.json)

Evaluation is zero-shot text-to-image retrieval on DataLoader.Eval (the held-out combinations): one caption per
combination queries all its images; recall@1/@5, beside the chance level of that gallery.
"""
import logging
import os

import numpy as np
import paddle
from tqdm import tqdm

from ..engine import checkpoint as ckpt
from ..engine.optim import build_optimizer
from ..engine.task import Task
from ..engine.trainer import Trainer, seed_everything
from ..errors import ConfigError
from ..rec.losses import CombinedLoss
from ..rec.task import _image_shape, set_device
from ..registry import split_spec
from .data import CaptionBatches, CaptionList, backbone_features
from .metrics import chance_recall, text_to_image_recall
from .model import build_clip_model

log = logging.getLogger("ppshitu.clip")


def build_model(cfg):
    """(ClipModel, tokenizer), with Global.pretrained_model's weights when set."""
    model, tok = build_clip_model(cfg.Arch, _image_shape(cfg))
    if cfg.Global.pretrained_model:
        log.info("loaded weights %s", ckpt.load_weights(model, cfg.Global.pretrained_model))
    return model, tok


def _topk(cfg):
    topk = []
    for i, spec in enumerate(cfg.Metric.Eval or [{"Recallk": {"topk": [1, 5]}}]):
        name, kw = split_spec(spec, f"Metric.Eval[{i}]")
        k = kw.get("topk", [1, 5])
        if name != "Recallk" or set(kw) - {"topk"} or not all(isinstance(v, int) and v > 0 for v in
                                                              (k if isinstance(k, list) else [k])):
            raise ConfigError(f"Metric.Eval[{i}]: the text-image model is scored by Recallk {{topk: [1, 5]}}, got "
                              f"{name} {kw}")
        topk += k if isinstance(k, list) else [k]
    return tuple(sorted(set(topk)))


class TextToImageEvaluator:
    """Recall@k of DataLoader.Eval's captions over its images; a frozen backbone's features computed once."""

    def __init__(self, cfg, tokenizer, model):
        self.data = CaptionList((cfg.get("DataLoader") or {}).get("Eval"), "DataLoader.Eval")
        self.topk = _topk(cfg)
        captions, self.text_combos = self.data.eval_captions()
        self.ids = tokenizer.encode(captions).ids
        self.features = backbone_features(model.image, self.data, desc="eval image features") \
            if model.image.frozen else None
        self.chance = chance_recall(self.text_combos, self.data.combos, self.topk)

    def embed(self, model):
        """(text embeddings of the eval captions, image embeddings of the eval images)."""
        model.eval()
        with paddle.no_grad():
            text = model.text(paddle.to_tensor(self.ids)).numpy()
            if self.features is not None:
                image = model.image.project(paddle.to_tensor(self.features)).numpy()
            else:
                image = np.concatenate([model.image(paddle.to_tensor(self.data.images(range(s, min(s + 64, len(
                    self.data)))))).numpy() for s in tqdm(range(0, len(self.data), 64), desc="eval images",
                                                         leave=False)])
        return text, image

    def __call__(self, model):
        text, image = self.embed(model)
        metrics = text_to_image_recall(text, self.text_combos, image, self.data.combos, self.topk)
        metrics.update({f"chance_{k}": v for k, v in self.chance.items()})
        return metrics


def train(cfg, hooks=()):
    """Train; returns the history (its epoch 0 is the model before training)."""
    set_device(cfg)
    g = cfg.Global
    seed_everything(g.seed or 0)
    model, tok = build_model(cfg)
    data = CaptionList((cfg.get("DataLoader") or {}).get("Train"), "DataLoader.Train")
    feats = backbone_features(model.image, data, desc="train image features") if model.image.frozen else None
    loader = CaptionBatches(data, tok, feats)
    if len(loader) == 0:
        raise ConfigError(f"DataLoader.Train: {len(data)} images make no batch of {data.batch_size}")
    losses = CombinedLoss(cfg.Loss.Train or [{"ClipLoss": {}}], "Loss.Train")
    params = [p for _, p in ckpt.trained_parameters(model, losses) if not p.stop_gradient]
    steps = min(len(loader), g.max_iters_per_epoch or len(loader))
    optimizer, scheduler = build_optimizer(cfg.Optimizer, params, g.epochs, steps)

    def loss_fn(net, batch):
        outputs = net(image=batch.get("image"), input_ids=batch["input_ids"], features=batch.get("features"))
        return losses(outputs, batch["label"])

    evaluator = TextToImageEvaluator(cfg, tok, model) if g.eval_during_train else None
    trainer = Trainer.from_config(cfg, model, loss_fn, optimizer, loader, lr_scheduler=scheduler,
                                  evaluate_fn=evaluator, key_metric="recall1" if evaluator else None,
                                  hooks=list(hooks), eval_before_train=True, loss_module=losses)
    return trainer.train()


def evaluate(cfg):
    set_device(cfg)
    if not cfg.Global.pretrained_model:
        log.warning("Global.pretrained_model is not set: evaluating an untrained model")
    model, tok = build_model(cfg)
    metrics = TextToImageEvaluator(cfg, tok, model)(model)
    log.info("eval: %s", ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return metrics


def export(cfg, out_dir=None):
    """Write image_encoder.onnx, text_encoder.onnx, tokenizer.json and clip_model.yml to `out_dir`."""
    from .export import export_clip

    out_dir = out_dir or cfg.Global.save_inference_dir
    if not cfg.Global.pretrained_model:
        raise ConfigError("Global.pretrained_model is required to export, e.g. "
                          "-o Global.pretrained_model=output/clip_demo/best_model")
    set_device(cfg)
    model, tok = build_model(cfg)
    data = CaptionList((cfg.get("DataLoader") or {}).get("Eval"), "DataLoader.Eval")
    facts = export_clip(model, out_dir, data.preprocess, _image_shape(cfg), cfg.Arch["TextTower"]["tokenizer"], tok)
    log.info("exported %s (embedding %d, text context %d)", out_dir, facts["embedding_size"],
             facts["text"]["context_length"])
    log.info("ONNX vs Paddle, lowest cosine: %s", facts["onnx_vs_paddle_min_cosine"])
    return out_dir


TASK = Task("text-image", train, evaluate, export, eval_mode="retrieval")  # ppshitu/tasks.py: Arch.name ClipModel
