"""A task-agnostic training loop; everything around the step is a hook (`ppshitu.engine.hooks`).

    trainer = Trainer(model, loss_fn, optimizer, train_loader,
                      lr_scheduler=sched,             # paddle LRScheduler, stepped once per iteration
                      evaluate_fn=evaluate,           # model -> {"recall1": 0.7, ...}; None: no evaluation
                      key_metric="recall1",           # picks best_model (higher is better unless told)
                      epochs=10, output_dir="output/RecModel", eval_interval=1, save_interval=1,
                      loss_module=losses)             # a loss with parameters: optimised and checkpointed too
    trainer.resume("output/RecModel/epoch_5")         # optional: exact continuation
    history = trainer.train()                         # [{"epoch": 1, "loss": ..., "recall1": ...}, ...]

`loss_fn(model, batch) -> dict` of scalar tensors: "loss" is the total that is back-propagated;
every other entry is a term that is logged on its own. `batch_size_fn(batch)` counts a batch's
images (default: the length of its first array) for the images/s figure.

The default hooks, built from the keyword arguments, in order: LR schedule, logging, evaluation
(EvalHook), checkpoints (CheckpointHook); `hooks=` adds more after them (EMA, time budgets, ...).
A hook may set `trainer.should_stop` to end training after the current epoch.

Exact resume: every epoch starts by seeding python, numpy and paddle from (seed, epoch) and by
calling `train_loader.batch_sampler.set_epoch(epoch)` when it has one, so data order, augmentation
and any paddle randomness depend on the epoch number only. A checkpoint then needs just model,
optimizer, LR schedule, AMP scaler, the loss's parameters and counters.

Checkpoints (`ppshitu.engine.checkpoint`): `prefix.pdparams` (model), `prefix.pdopt` (optimizer,
LR schedule, AMP scaler, loss parameters), `prefix.pdstates` (JSON: epoch, best metric, history);
every hook hears `after_save(trainer, prefix)` and may write its own files beside them.

Data-parallel: started under `python -m paddle.distributed.launch`, the trainer initialises the
parallel environment and wraps the model in `paddle.DataParallel` (gradients averaged over the
ranks; a loss's own parameters are averaged here too); the P×K sampler gives each rank its share of
one global batch (batch_size per rank). The loss terms logged and kept in the history are the mean
over the ranks, i.e. the global batch's. Only rank 0 logs (the other ranks: warnings only),
evaluates and saves; BatchNorm statistics stay per rank (no SyncBN), as in PaddleClas.
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
from .hooks import CheckpointHook, EvalHook, LoggingHook, LRSchedulerHook, fmt

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
                 eval_before_train=False, loss_module=None):
        self.world_size = paddle.distributed.get_world_size()
        self.rank = paddle.distributed.get_rank()
        if self.world_size > 1:
            paddle.distributed.init_parallel_env()
            model = paddle.DataParallel(model)
            if self.rank != 0:  # one log for the run: rank 0's (the others still report warnings)
                logging.getLogger("ppshitu").setLevel(logging.WARNING)
        self.model = model
        self.loss_fn = loss_fn
        self.loss_module = loss_module
        self.key_metric = key_metric
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.lr_scheduler = lr_scheduler
        self.epochs = epochs
        self.output_dir = output_dir
        self._guard = None
        self.max_iters = max_iters_per_epoch
        self.seed = 0 if seed is None else int(seed)
        self.batch_size_fn = batch_size_fn or _default_batch_size
        self.config = config
        self.show_progress = show_progress and self.is_main
        # AMP only where it pays: on GPU. On CPU it would run bf16 kernels nobody asked for.
        self.use_amp = bool(use_amp) and paddle.device.get_device().startswith("gpu")
        self.amp_level = amp_level
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=scale_loss,
                                            use_dynamic_loss_scaling=use_dynamic_loss_scaling) if self.use_amp else None
        self.epoch = 0  # the last finished epoch
        self.global_step = 0
        self.epoch_step, self.epoch_steps, self.images_per_second = 0, None, 0.0
        self.best_metric = None
        self.history = []
        self.record = {}
        self.last_metrics = {}
        self.should_stop = False  # a hook sets it to end training after the current epoch (time budgets)
        self.hooks = self._default_hooks(lr_scheduler, print_batch_step, evaluate_fn, key_metric, higher_is_better,
                                         eval_interval, start_eval_epoch, eval_before_train, save_interval)
        self.hooks += list(hooks)

    @classmethod
    def from_config(cls, cfg, model, loss_fn, optimizer, train_loader, **kwargs):
        """A trainer with the schedule every task reads from its config (Global's epochs, intervals, step
        limit, seed and output_dir; AMP's settings where the config has that section), resumed from
        Global.checkpoints when set (after the hooks exist: an EMA hook restores its average too); `kwargs`
        add the task's own (evaluate_fn, key_metric, hooks, ...) and may override any of them."""
        g = cfg.Global
        args = dict(epochs=g.epochs, output_dir=g.output_dir, eval_interval=g.eval_interval,
                    start_eval_epoch=g.start_eval_epoch, save_interval=g.save_interval,
                    print_batch_step=g.print_batch_step, max_iters_per_epoch=g.max_iters_per_epoch, seed=g.seed,
                    config=cfg)
        amp = cfg.get("AMP")
        if amp:
            args.update(use_amp=amp.use_amp, amp_level=amp.level, scale_loss=amp.scale_loss,
                        use_dynamic_loss_scaling=amp.use_dynamic_loss_scaling)
        trainer = cls(model, loss_fn, optimizer, train_loader, **{**args, **kwargs})
        if g.checkpoints:
            trainer.resume(g.checkpoints)
        return trainer

    @staticmethod
    def _default_hooks(lr_scheduler, print_batch_step, evaluate_fn, key_metric, higher_is_better, eval_interval,
                       start_eval_epoch, eval_before_train, save_interval):
        hooks = [LRSchedulerHook(lr_scheduler)] if lr_scheduler is not None else []
        hooks.append(LoggingHook(print_batch_step))
        eval_hook = None
        if evaluate_fn is not None:
            eval_hook = EvalHook(evaluate_fn, key_metric, higher_is_better, eval_interval, start_eval_epoch,
                                 eval_before_train)
            hooks.append(eval_hook)
        hooks.append(CheckpointHook(save_interval, eval_hook))
        return hooks

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

    @property
    def output_guard(self):
        """The OutputGuard of output_dir every checkpoint write goes through (utils/outputs.py)."""
        if self._guard is None:
            self._guard = ckpt.output_guard(self.output_dir)
        return self._guard

    def resume(self, prefix):
        """Continue from a checkpoint prefix (e.g. output/RecModel/epoch_5). Resuming from a checkpoint in
        output_dir is the user's word that the checkpoint files there are this run's to replace."""
        prefix = prefix[: -len(".pdparams")] if prefix.endswith(".pdparams") else prefix
        if self.is_main and os.path.realpath(os.path.dirname(os.path.abspath(prefix))) == \
                os.path.realpath(os.path.abspath(self.output_dir)):
            for path in ckpt.checkpoint_named_files(self.output_dir):
                self.output_guard.adopt(path)
        states = ckpt.load_checkpoint(prefix, self.bare_model, self.optimizer, self.lr_scheduler, self.scaler,
                                      self.loss_module)
        self.epoch = int(states["epoch"])
        self.global_step = int(states.get("global_step", 0))
        self.best_metric = states.get("best_metric")
        self.history = list(states.get("history", []))
        self._call_hooks("resume", prefix)
        log.info("resumed from %s at epoch %d (step %d)", prefix, self.epoch, self.global_step)

    def save(self, name):
        """Write checkpoint `output_dir/name` (rank 0 only) and tell the hooks."""
        if not self.is_main:
            return
        prefix = os.path.join(self.output_dir, name)
        ckpt.save_checkpoint(prefix, self.bare_model, self.optimizer, self.lr_scheduler, self.scaler, self.state(),
                             self.config, self.loss_module, guard=self.output_guard)
        self._call_hooks("after_save", prefix)

    def _call_hooks(self, event, *args):
        for hook in self.hooks:
            fn = getattr(hook, event, None)
            if fn is not None:
                fn(self, *args)

    # ------------------------------------------------------------------ loop
    def train(self):
        if self.is_main:  # refuse before any work: a checkpoint-named file ppshitu did not write is never replaced
            self.output_guard.check_all(ckpt.checkpoint_named_files(self.output_dir))
        os.makedirs(self.output_dir, exist_ok=True)
        try:
            return self._train()
        finally:
            if self.is_main:
                self.output_guard.flush()

    def _train(self):
        self._call_hooks("before_train")
        for epoch in range(self.epoch + 1, self.epochs + 1):
            self.record = {"epoch": epoch, **self._train_epoch(epoch)}
            self.epoch = epoch
            self.history.append(self.record)
            self._call_hooks("after_epoch")
            if self.should_stop:
                log.info("stopping after epoch %d (requested by a hook)", epoch)
                break
        self._call_hooks("after_train")
        return self.history

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
        self.epoch_steps = total
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
            self.epoch_step = steps
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            self.images_per_second = images / max(time.perf_counter() - start, 1e-9)
            self._call_hooks("after_step", losses)
            bar.update()
            bar.set_postfix(loss=f"{losses['loss']:.4f}", ips=f"{self.images_per_second:.1f}")
            if self.max_iters and steps >= self.max_iters:
                break
        bar.close()
        if steps == 0:
            raise RuntimeError("the training loader yielded no batch: is the data set smaller than one batch?")
        elapsed = time.perf_counter() - start
        record = {k: v / steps for k, v in sums.items()}
        record.update(ips=images / elapsed, epoch_time=elapsed, lr=self.current_lr())
        if self.is_main:
            log.info("epoch %d done: %s, %.1f images/s, %.1fs", epoch, fmt({k: record[k] for k in sums}),
                     record["ips"], elapsed)
        return record

    def _step(self, batch):
        if self.use_amp:
            with paddle.amp.auto_cast(level=self.amp_level):
                terms = self.loss_fn(self.model, batch)
            loss = terms["loss"]
            self.scaler.scale(loss).backward()
            self._average_loss_grads()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            terms = self.loss_fn(self.model, batch)
            loss = terms["loss"]
            loss.backward()
            self._average_loss_grads()
            self.optimizer.step()
        self.optimizer.clear_grad()
        values = self._mean_over_ranks({k: float(v) for k, v in terms.items()})
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(f"loss became {values['loss']} at step {self.global_step + 1}: "
                                     f"terms {values}; lower the learning rate?")
        return values

    def _average_loss_grads(self):
        """DataParallel averages the model's gradients; a loss's own parameters live outside it."""
        if self.world_size < 2 or self.loss_module is None:
            return
        for p in self.loss_module.parameters():
            if not p.stop_gradient and p.grad is not None:
                grad = p.grad
                paddle.distributed.all_reduce(grad)
                grad.scale_(1.0 / self.world_size)

    def _mean_over_ranks(self, values):
        """The step's loss terms averaged over the ranks (every rank gets the same numbers, so a
        non-finite loss stops all of them at once)."""
        if self.world_size < 2:
            return values
        keys = sorted(values)
        t = paddle.to_tensor([values[k] for k in keys], dtype="float32")
        paddle.distributed.all_reduce(t)
        return dict(zip(keys, (t.numpy() / self.world_size).tolist()))

    def current_lr(self):
        return float(self.optimizer.get_lr())

