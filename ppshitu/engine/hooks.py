"""Trainer hooks: everything around the bare optimisation step (detectron2's pattern).

A hook overrides any of the events below; the trainer calls them in the order the hooks were
given. The trainer's state is on `trainer` (`epoch`, `global_step`, `history`, `record` (the
running epoch's entry of history), `last_metrics`, `best_metric`, `model`, `output_dir`, ...).
"""
import logging
import os

import paddle

log = logging.getLogger("ppshitu.train")


class HookBase:
    def before_train(self, trainer):
        pass

    def before_epoch(self, trainer):
        pass

    def after_step(self, trainer, losses):
        """`losses`: the step's {name: float} terms."""

    def after_epoch(self, trainer):
        pass

    def after_save(self, trainer, prefix):
        """The trainer wrote the checkpoint `prefix` (.pdparams/.pdopt/.pdstates)."""

    def resume(self, trainer, prefix):
        """Restore this hook's own state saved beside checkpoint `prefix`."""

    def after_train(self, trainer):
        pass


def fmt(values):
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


class LRSchedulerHook(HookBase):
    """Steps a paddle LRScheduler once per iteration (epoch-valued keys were converted to steps)."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def after_step(self, trainer, losses):
        self.scheduler.step()


class LoggingHook(HookBase):
    """Every `period` steps: lr, each loss term, images/s (rank 0 only)."""

    def __init__(self, period=10):
        self.period = max(1, int(period))

    def after_step(self, trainer, losses):
        if trainer.is_main and trainer.epoch_step % self.period == 0:
            log.info("epoch %d [%d/%s] lr %.6f %s ips %.1f images/s", trainer.epoch + 1, trainer.epoch_step,
                     trainer.epoch_steps or "?", trainer.current_lr(), fmt(losses), trainer.images_per_second)


class EvalHook(HookBase):
    """Scores the model every `interval` epochs after `start_epoch` and on the last one;
    `key_metric` decides best_model. With `before_training`, the untrained network is scored too
    (history entry epoch 0): the bar that training must clear, which never becomes best_model."""

    def __init__(self, evaluate_fn, key_metric=None, higher_is_better=True, interval=1, start_epoch=0,
                 before_training=False):
        self.evaluate_fn, self.key_metric, self.higher_is_better = evaluate_fn, key_metric, higher_is_better
        self.interval, self.start_epoch, self.before_training = max(1, interval), start_epoch, before_training
        self.improved = False

    def before_train(self, trainer):
        if self.before_training and trainer.epoch == 0 and trainer.is_main:
            metrics = self.evaluate_fn(trainer.bare_model)
            trainer.model.train()
            log.info("before training: %s", fmt(metrics))
            trainer.history.append({"epoch": 0, **metrics})

    def after_epoch(self, trainer):
        self.improved = False
        epoch = trainer.epoch
        if not trainer.is_main or epoch <= self.start_epoch or (epoch % self.interval and epoch != trainer.epochs):
            return
        metrics = self.evaluate_fn(trainer.bare_model)
        trainer.model.train()
        trainer.last_metrics = metrics
        trainer.record.update(metrics)
        log.info("epoch %d eval: %s", epoch, fmt(metrics))
        if self.key_metric is None:
            return
        if self.key_metric not in metrics:
            raise KeyError(f"key_metric {self.key_metric!r} not among the evaluation's {sorted(metrics)}")
        value = float(metrics[self.key_metric])
        best = trainer.best_metric
        if best is None or (value > best if self.higher_is_better else value < best):
            trainer.best_metric, self.improved = value, True
            log.info("new best %s %.4f", self.key_metric, value)


class CheckpointHook(HookBase):
    """After each epoch: `epoch_N` every `interval` epochs, `best_model` when the EvalHook found a
    better score, and `latest`. Placed after the EvalHook."""

    def __init__(self, interval=1, eval_hook=None):
        self.interval, self.eval_hook = interval, eval_hook

    def after_epoch(self, trainer):
        if self.interval > 0 and trainer.epoch % self.interval == 0:
            trainer.save(f"epoch_{trainer.epoch}")
        if self.eval_hook is not None and self.eval_hook.improved:
            trainer.save("best_model")
        trainer.save("latest")


class ModelEMA:
    """Exponential moving average of a model's weights. decay ramps up as
    min(decay, (1 + step) / (10 + step)), as in PaddleDetection, so early averages are not
    dominated by the random initialisation."""

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


EMA_EXT = ".pdema"


class EMAHook(HookBase):
    """Keeps the average after every step and writes it as `<prefix>.pdema` beside every checkpoint
    the trainer writes. The model keeps its raw weights (so optimizer state and exact resume stay
    plain); evaluation through `evaluate_with_average` scores the average."""

    def __init__(self, ema):
        self.ema = ema

    def after_step(self, trainer, losses):
        self.ema.update()

    def after_save(self, trainer, prefix):
        state = self.ema.state_dict()  # through the trainer's OutputGuard: never over a file ppshitu did not write
        trainer.output_guard.write_with(prefix + EMA_EXT, lambda tmp: paddle.save(state, tmp))

    def resume(self, trainer, prefix):
        if os.path.isfile(prefix + EMA_EXT):
            self.ema.set_state_dict(paddle.load(prefix + EMA_EXT))

    def evaluate_with_average(self, evaluate):
        def run(model):
            self.ema.swap()
            try:
                return evaluate(model)
            finally:
                self.ema.swap()
        return run


def load_for_inference(model, prefix, where="Global.pretrained_model"):
    """Load `prefix.pdparams`, then its EMA average when `prefix.pdema` exists."""
    from .checkpoint import load_weights

    path = load_weights(model, prefix, where)
    ema_path = path[: -len(".pdparams")] + EMA_EXT if path.endswith(".pdparams") else None
    if ema_path and os.path.isfile(ema_path):
        model.set_state_dict(paddle.load(ema_path)["shadow"])
    return path
