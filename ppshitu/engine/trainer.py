"""A task-agnostic training loop plus hooks, shared by recognition and detection.

    trainer = Trainer(model, loss_fn, optimizer, train_loader,
                      lr_scheduler=sched,             # paddle LRScheduler, stepped once per iteration
                      evaluate_fn=evaluate,           # model -> {"recall1": 0.7, ...}; None: no evaluation
                      key_metric="recall1",           # picks best_model (higher is better unless told)
                      epochs=10, output_dir="output/RecModel", eval_interval=1, save_interval=1)
    trainer.resume("output/RecModel/epoch_5")         # optional: exact continuation
    history = trainer.train()                         # [{"epoch": 1, "loss": ..., "recall1": ...}, ...]

`loss_fn(model, batch) -> dict` of scalar tensors: "loss" is the total that is
back-propagated; every other entry is a term that is logged on its own. A batch is
whatever the loader yields; `batch_size_fn(batch)` counts its images (default: the
length of its first array) for the images/s figure.

Exact resume: every epoch starts by seeding python, numpy and paddle from
(seed, epoch) and by calling `train_loader.batch_sampler.set_epoch(epoch)` when it has
one, so data order, augmentation and any paddle randomness depend on the epoch
number only. A checkpoint then needs just model, optimizer, LR schedule, AMP scaler
and counters, and a run resumed from `epoch_N` repeats the uninterrupted run's
remaining epochs exactly (on CPU; GPU kernels may be nondeterministic).

`eval_before_train=True` also evaluates the untrained model (history entry epoch 0),
the baseline that training must beat; it never becomes best_model.

Checkpoints (`ppshitu.engine.checkpoint`): `latest`, `best_model` (by `key_metric`)
and `epoch_N` every `save_interval` epochs, each `prefix.pdparams` (model),
`prefix.pdopt` (optimizer, LR schedule, AMP scaler) and `prefix.pdstates` (JSON:
epoch, best metric, history).

Hooks: objects with any of `before_train(t)`, `before_epoch(t)`, `after_step(t, losses)`,
`after_epoch(t)`, `after_train(t)`; the trainer's state is on `t` (`epoch`,
`global_step`, `history`, `last_metrics`, `model`, ...); a hook may set `t.should_stop`
to end training after the current epoch. Built-in behaviour (logging,
LR step, evaluation, checkpoints) is plain code in the loop; hooks add to it.

Data-parallel: started under `python -m paddle.distributed.launch`, the trainer
initialises the parallel environment and wraps the model in `paddle.DataParallel`
(the P×K sampler splits batches by rank); only rank 0 logs, evaluates and saves.
"""
import logging
import math
import os
import random
import time

import numpy as np
import paddle
from tqdm import tqdm

from . import checkpoint as ckpt

log = logging.getLogger("ppshitu.train")


def _default_batch_size(batch):
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return int(first.shape[0])


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    paddle.seed(seed)


class Trainer:
    def __init__(self, model, loss_fn, optimizer, train_loader, *, epochs, output_dir,
                 lr_scheduler=None, evaluate_fn=None, key_metric=None, higher_is_better=True,
                 eval_interval=1, start_eval_epoch=0, save_interval=1, print_batch_step=10,
                 max_iters_per_epoch=None, seed=0, use_amp=False, amp_level="O1", scale_loss=65536.0,
                 use_dynamic_loss_scaling=True, batch_size_fn=None, hooks=(), config=None, show_progress=True,
                 eval_before_train=False):
        self.world_size = paddle.distributed.get_world_size()
        self.rank = paddle.distributed.get_rank()
        if self.world_size > 1:
            paddle.distributed.init_parallel_env()
            model = paddle.DataParallel(model)
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.lr_scheduler = lr_scheduler
        self.evaluate_fn = evaluate_fn
        self.key_metric = key_metric
        self.higher_is_better = higher_is_better
        self.epochs = epochs
        self.output_dir = output_dir
        self.eval_interval = max(1, eval_interval)
        self.start_eval_epoch = start_eval_epoch
        self.save_interval = save_interval
        self.print_batch_step = max(1, print_batch_step)
        self.max_iters = max_iters_per_epoch
        self.seed = 0 if seed is None else int(seed)
        self.batch_size_fn = batch_size_fn or _default_batch_size
        self.hooks = list(hooks)
        self.config = config
        self.show_progress = show_progress and self.is_main
        self.eval_before_train = eval_before_train
        # AMP only where it pays: on GPU. On CPU it would run bf16 kernels nobody asked for.
        self.use_amp = bool(use_amp) and paddle.device.get_device().startswith("gpu")
        self.amp_level = amp_level
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=scale_loss,
                                            use_dynamic_loss_scaling=use_dynamic_loss_scaling) if self.use_amp else None
        self.epoch = 0  # the last finished epoch
        self.global_step = 0
        self.best_metric = None
        self.history = []
        self.last_metrics = {}
        self.should_stop = False  # a hook sets it to end training after the current epoch (time budgets)

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def bare_model(self):
        return self.model._layers if isinstance(self.model, paddle.DataParallel) else self.model

    # ------------------------------------------------------------------ state
    def state(self):
        return {"epoch": self.epoch, "global_step": self.global_step, "best_metric": self.best_metric,
                "key_metric": self.key_metric, "history": self.history}

    def resume(self, prefix):
        """Continue from a checkpoint prefix (e.g. output/RecModel/epoch_5)."""
        states = ckpt.load_checkpoint(prefix, self.bare_model, self.optimizer, self.lr_scheduler, self.scaler)
        self.epoch = int(states["epoch"])
        self.global_step = int(states.get("global_step", 0))
        self.best_metric = states.get("best_metric")
        self.history = list(states.get("history", []))
        log.info("resumed from %s at epoch %d (step %d)", prefix, self.epoch, self.global_step)

    def _save(self, name):
        if self.is_main:
            ckpt.save_checkpoint(os.path.join(self.output_dir, name), self.bare_model, self.optimizer,
                                 self.lr_scheduler, self.scaler, self.state(), self.config)

    def _call_hooks(self, event, *args):
        for hook in self.hooks:
            fn = getattr(hook, event, None)
            if fn is not None:
                fn(self, *args)

    # ------------------------------------------------------------------ loop
    def train(self):
        os.makedirs(self.output_dir, exist_ok=True)
        self._call_hooks("before_train")
        if self.eval_before_train and self.epoch == 0 and self.evaluate_fn is not None and self.is_main:
            # the untrained network's score is the bar training must clear (metric learning from
            # scratch on small data can fall below it); it does not compete for best_model
            metrics = self.evaluate_fn(self.bare_model)
            log.info("before training: %s", _fmt(metrics))
            self.history.append({"epoch": 0, **metrics})
        for epoch in range(self.epoch + 1, self.epochs + 1):
            record = {"epoch": epoch, **self._train_epoch(epoch)}
            self.epoch = epoch
            if self._should_evaluate(epoch):
                record.update(self._evaluate(epoch))
            self.history.append(record)
            self._call_hooks("after_epoch")
            if self.save_interval > 0 and epoch % self.save_interval == 0:
                self._save(f"epoch_{epoch}")
            self._save("latest")
            if self.should_stop:
                log.info("stopping after epoch %d (requested by a hook)", epoch)
                break
        self._call_hooks("after_train")
        return self.history

    def _should_evaluate(self, epoch):
        return (self.evaluate_fn is not None and self.is_main and epoch > self.start_eval_epoch
                and (epoch % self.eval_interval == 0 or epoch == self.epochs))

    def _evaluate(self, epoch):
        metrics = self.evaluate_fn(self.bare_model)
        self.model.train()
        self.last_metrics = metrics
        log.info("epoch %d eval: %s", epoch, _fmt(metrics))
        if self.key_metric is not None:
            if self.key_metric not in metrics:
                raise KeyError(f"key_metric {self.key_metric!r} not among the evaluation's {sorted(metrics)}")
            value = float(metrics[self.key_metric])
            better = self.best_metric is None or (value > self.best_metric if self.higher_is_better
                                                  else value < self.best_metric)
            if better:
                self.best_metric = value
                self._save("best_model")
                log.info("new best %s %.4f: saved best_model", self.key_metric, value)
        return metrics

    def _train_epoch(self, epoch):
        seed_everything(self.seed * 100003 + epoch)
        sampler = getattr(self.train_loader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self.model.train()
        self._call_hooks("before_epoch")
        try:
            total = len(self.train_loader)
        except TypeError:
            total = None
        if self.max_iters:
            total = min(total or self.max_iters, self.max_iters)
        sums, images, steps = {}, 0, 0
        start = time.perf_counter()
        bar = tqdm(total=total, desc=f"epoch {epoch}/{self.epochs}", unit="it", disable=not self.show_progress,
                   leave=False)
        for batch in self.train_loader:
            losses = self._step(batch)
            n = self.batch_size_fn(batch)
            images += n
            steps += 1
            self.global_step += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            self._call_hooks("after_step", losses)
            ips = images / max(time.perf_counter() - start, 1e-9)
            bar.update()
            bar.set_postfix(loss=f"{losses['loss']:.4f}", ips=f"{ips:.1f}")
            if self.is_main and steps % self.print_batch_step == 0:
                log.info("epoch %d [%d/%s] lr %.6f %s ips %.1f images/s", epoch, steps, total or "?",
                         self.current_lr(), _fmt(losses), ips)
            if self.max_iters and steps >= self.max_iters:
                break
        bar.close()
        if steps == 0:
            raise RuntimeError("the training loader yielded no batch: is the data set smaller than one batch?")
        elapsed = time.perf_counter() - start
        record = {k: v / steps for k, v in sums.items()}
        record.update(ips=images / elapsed, epoch_time=elapsed, lr=self.current_lr())
        if self.is_main:
            log.info("epoch %d done: %s, %.1f images/s, %.1fs", epoch, _fmt({k: record[k] for k in sums}),
                     record["ips"], elapsed)
        return record

    def _step(self, batch):
        if self.use_amp:
            with paddle.amp.auto_cast(level=self.amp_level):
                terms = self.loss_fn(self.model, batch)
            loss = terms["loss"]
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            terms = self.loss_fn(self.model, batch)
            loss = terms["loss"]
            loss.backward()
            self.optimizer.step()
        self.optimizer.clear_grad()
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        values = {k: float(v) for k, v in terms.items()}
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(f"loss became {values['loss']} at step {self.global_step + 1}: "
                                     f"terms {values}; lower the learning rate?")
        return values

    def current_lr(self):
        return float(self.optimizer.get_lr())


def _fmt(values):
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
