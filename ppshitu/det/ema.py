"""Exponential moving average of a detector's weights, as a trainer hook.

The model keeps its raw weights (so optimizer state and exact resume stay plain);
the average lives here, is swapped in for evaluation, and is written next to each
checkpoint the trainer saves as `<prefix>.pdema`. Evaluation and export load
`<prefix>.pdema` over `<prefix>.pdparams` when it exists (`load_for_inference`).
"""
import os

import paddle

EMA_EXT = ".pdema"


class ModelEMA:
    """decay ramps up as min(decay, (1 + step) / (10 + step)), as in PaddleDetection,
    so early averages are not dominated by the random initialisation."""

    def __init__(self, model, decay=0.9998):
        self.model, self.decay, self.step = model, float(decay), 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @paddle.no_grad()
    def update(self):
        self.step += 1
        d = min(self.decay, (1 + self.step) / (10 + self.step))
        for k, v in self.model.state_dict().items():
            if paddle.is_floating_point(v):
                self.shadow[k] = d * self.shadow[k] + (1 - d) * v.detach()
            else:  # counters (e.g. BN's) are copied, not averaged
                self.shadow[k] = v.detach().clone()

    def state_dict(self):
        return {"step": self.step, "shadow": self.shadow}

    def set_state_dict(self, state):
        self.step = int(state["step"])
        self.shadow = dict(state["shadow"])

    def swap(self):
        """Exchange the model's weights with the average (call twice to undo)."""
        raw = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.set_state_dict(self.shadow)
        self.shadow = raw


class EMAHook:
    """Updates the average after every step; writes `<checkpoint>.pdema` for the
    checkpoints the trainer writes this epoch (latest, epoch_N, best_model); restores
    the average on resume."""

    def __init__(self, ema):
        self.ema = ema
        self._best = None

    def after_step(self, trainer, losses):
        self.ema.update()

    def resume(self, prefix):
        path = prefix[: -len(".pdparams")] if prefix.endswith(".pdparams") else prefix
        if os.path.isfile(path + EMA_EXT):
            self.ema.set_state_dict(paddle.load(path + EMA_EXT))

    def before_train(self, trainer):
        self._best = trainer.best_metric

    def after_epoch(self, trainer):
        if not trainer.is_main:
            return
        names = ["latest"]
        if trainer.save_interval > 0 and trainer.epoch % trainer.save_interval == 0:
            names.append(f"epoch_{trainer.epoch}")
        if trainer.best_metric is not None and trainer.best_metric != self._best:
            self._best = trainer.best_metric
            names.append("best_model")
        state = self.ema.state_dict()
        for name in names:
            path = os.path.join(trainer.output_dir, name + EMA_EXT)
            paddle.save(state, path + ".tmp")
            os.replace(path + ".tmp", path)

    def evaluate_with_average(self, evaluate):
        """Wrap `evaluate(model)` so it scores the averaged weights."""
        def run(model):
            self.ema.swap()
            try:
                return evaluate(model)
            finally:
                self.ema.swap()
        return run


def load_for_inference(model, prefix, where="Global.pretrained_model"):
    """Load `prefix.pdparams`, then its EMA average when `prefix.pdema` exists."""
    from ..engine.checkpoint import load_weights, weights_path

    path = weights_path(prefix)
    load_weights(model, path, where)
    ema_path = path[: -len(".pdparams")] + EMA_EXT if path.endswith(".pdparams") else None
    if ema_path and os.path.isfile(ema_path):
        model.set_state_dict(paddle.load(ema_path)["shadow"])
    return path
