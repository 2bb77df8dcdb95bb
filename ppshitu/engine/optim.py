"""Optimizers and LR schedules from PaddleClas's `Optimizer` section.

    Optimizer: {name: Momentum, momentum: 0.9,
                lr: {name: Cosine, learning_rate: 0.04, warmup_epoch: 1},
                regularizer: {name: L2, coeff: 0.0005}}

Schedules are stepped once per iteration; epoch-valued keys (milestones, warmup_epoch)
are converted with the number of iterations per epoch, so a schedule means the same
whatever the data set size.

Every key has its type and range in its class's CONFIG_SCHEMA (ppshitu/registry.py checks them before
anything is built): a learning rate above 0 and at most MAX_LR, a momentum or beta in [0, 1), a weight
decay or regularizer coeff in [0, 1], epochs >= 0; a number may be written as text (`1e-4`, which YAML
reads as a string).
"""
import paddle

from ..config import Field
from ..errors import ConfigError
from ..registry import SUPPLIED, Registry, split_spec

OPTIMIZERS = Registry("optimizer")
LR_SCHEDULES = Registry("lr")
NUM = (int, float)
MAX_LR = 10.0
MAX_EPOCHS = 100_000
_LR = Field(NUM, text_number=True, min_value=0, min_exclusive=True, max_value=MAX_LR, doc="a learning rate")
_LR_FLOOR = Field(NUM, text_number=True, min_value=0, max_value=MAX_LR, doc="a learning rate, 0 allowed")
_EPOCH = Field(NUM, min_value=0, max_value=MAX_EPOCHS, doc="epochs (fractions allowed)")
_BETA = Field(NUM, text_number=True, min_value=0, max_value=1, max_exclusive=True)
_DECAY = Field((int, float, type(None)), text_number=True, min_value=0, max_value=1, doc="L2 weight decay")
# keys every schedule takes: the two the trainer supplies, warmup, and PaddleClas's ones that change nothing here
_SCHEDULE = {
    "epochs": SUPPLIED, "step_each_epoch": SUPPLIED,
    "warmup_epoch": _EPOCH, "warmup_start_lr": _LR_FLOOR,
    "last_epoch": Field(int, only=(-1,), why="a resumed run restores its schedule from the checkpoint"),
}
_BY_EPOCH = {"by_epoch": Field(bool, doc="accepted for PaddleClas compatibility: schedules step per iteration")}
_OPTIMIZER = {
    "weight_decay": _DECAY, "grad_clip": Field((dict, type(None)), doc="{name: ClipGradByGlobalNorm, clip_norm: X}"),
    "no_weight_decay_name": Field((str, type(None))), "one_dim_param_no_weight_decay": Field(bool),
    "multi_precision": Field(bool),
}
_CLIP_NORM = Field(NUM, text_number=True, min_value=0, min_exclusive=True, max_value=1e6)
_COEFF = Field(NUM, text_number=True, min_value=0, max_value=1, doc="the regularizer's coefficient")


def _with_warmup(schedule, learning_rate, warmup_steps, warmup_start_lr):
    if warmup_steps <= 0:
        return schedule
    return paddle.optimizer.lr.LinearWarmup(schedule, warmup_steps, warmup_start_lr, learning_rate)


@LR_SCHEDULES.register()
class Constant:
    CONFIG_SCHEMA = {"learning_rate": _LR, **_SCHEDULE}

    def __init__(self, learning_rate, epochs, step_each_epoch, warmup_epoch=0, warmup_start_lr=0.0, last_epoch=-1):
        self.lr, self.warmup = learning_rate, round(warmup_epoch * step_each_epoch)
        self.warmup_start_lr = warmup_start_lr

    def __call__(self):
        return _with_warmup(self.lr, self.lr, self.warmup, self.warmup_start_lr)


@LR_SCHEDULES.register()
class Cosine:
    """Cosine from learning_rate to eta_min over the epochs after warmup."""

    CONFIG_SCHEMA = {"learning_rate": _LR, "eta_min": _LR_FLOOR, **_SCHEDULE, **_BY_EPOCH}

    def __init__(self, learning_rate, epochs, step_each_epoch, eta_min=0.0, warmup_epoch=0, warmup_start_lr=0.0,
                 last_epoch=-1, by_epoch=False):
        self.lr, self.eta_min, self.warmup_start_lr = learning_rate, eta_min, warmup_start_lr
        self.warmup = round(warmup_epoch * step_each_epoch)
        self.total = max(1, epochs * step_each_epoch - self.warmup)

    def __call__(self):
        cosine = paddle.optimizer.lr.CosineAnnealingDecay(self.lr, T_max=self.total, eta_min=self.eta_min)
        return _with_warmup(cosine, self.lr, self.warmup, self.warmup_start_lr)


@LR_SCHEDULES.register()
class MultiStepDecay:
    """learning_rate times gamma at each milestone epoch."""

    CONFIG_SCHEMA = {"learning_rate": _LR, "milestones": Field(list, item=_EPOCH),
                     "gamma": Field(NUM, min_value=0, min_exclusive=True, max_value=1), **_SCHEDULE, **_BY_EPOCH,
                     "verbose": Field(bool)}

    def __init__(self, learning_rate, milestones, epochs, step_each_epoch, gamma=0.1, warmup_epoch=0,
                 warmup_start_lr=0.0, last_epoch=-1, verbose=False, by_epoch=False):
        if not isinstance(milestones, list) or not all(isinstance(m, (int, float)) for m in milestones):
            raise ConfigError(f"Optimizer.lr.milestones must be a list of epochs, got {milestones!r}")
        self.lr, self.gamma, self.warmup_start_lr = learning_rate, gamma, warmup_start_lr
        self.warmup = round(warmup_epoch * step_each_epoch)
        self.milestones = [max(1, round(m * step_each_epoch) - self.warmup) for m in sorted(milestones)]

    def __call__(self):
        decay = paddle.optimizer.lr.MultiStepDecay(self.lr, milestones=self.milestones, gamma=self.gamma)
        return _with_warmup(decay, self.lr, self.warmup, self.warmup_start_lr)


@LR_SCHEDULES.register()
class Piecewise:
    """PaddleClas's Piecewise: `values[i]` until `decay_epochs[i]`."""

    CONFIG_SCHEMA = {"decay_epochs": Field(list, item=_EPOCH), "values": Field(list, item=_LR),
                     "learning_rate": Field((int, float, type(None)), text_number=True, min_value=0, max_value=MAX_LR,
                                            doc="accepted for PaddleClas compatibility: `values` decide"),
                     **_SCHEDULE, **_BY_EPOCH}

    def __init__(self, decay_epochs, values, epochs, step_each_epoch, warmup_epoch=0, warmup_start_lr=0.0,
                 last_epoch=-1, by_epoch=False, learning_rate=None):
        if len(values) != len(decay_epochs) + 1:
            raise ConfigError(f"Optimizer.lr: Piecewise needs len(values) == len(decay_epochs) + 1, "
                              f"got {len(values)} and {len(decay_epochs)}")
        self.values, self.warmup_start_lr = values, warmup_start_lr
        self.warmup = round(warmup_epoch * step_each_epoch)
        self.boundaries = [max(1, round(e * step_each_epoch) - self.warmup) for e in decay_epochs]

    def __call__(self):
        decay = paddle.optimizer.lr.PiecewiseDecay(self.boundaries, self.values)
        return _with_warmup(decay, self.values[0], self.warmup, self.warmup_start_lr)


def _split_decay(parameters, no_weight_decay_name, one_dim):
    """Parameter groups: the names matched by `no_weight_decay_name` (and 1-D ones) get none."""
    names = (no_weight_decay_name or "").split()
    params = list(parameters)
    if not names and not one_dim:
        return params
    skip = [p for p in params if (one_dim and len(p.shape) == 1) or any(n in p.name for n in names)]
    keep = [p for p in params if all(p is not q for q in skip)]
    return [{"params": keep}, {"params": skip, "weight_decay": 0.0}] if skip else params


@OPTIMIZERS.register()
class Momentum:
    CONFIG_SCHEMA = {"momentum": _BETA, "use_nesterov": Field(bool), **_OPTIMIZER}

    def __init__(self, momentum=0.9, use_nesterov=False, weight_decay=None, grad_clip=None,
                 no_weight_decay_name=None, one_dim_param_no_weight_decay=False, multi_precision=False):
        self.kw = dict(momentum=momentum, use_nesterov=use_nesterov, multi_precision=multi_precision)
        self.grad_clip, self.wd = grad_clip, weight_decay
        self.no_decay = (no_weight_decay_name, one_dim_param_no_weight_decay)

    def __call__(self, learning_rate, parameters, weight_decay):
        weight_decay = _l2_default(weight_decay, self.wd)
        parameters = _split_decay(parameters, *self.no_decay)
        return paddle.optimizer.Momentum(learning_rate, parameters=parameters, weight_decay=weight_decay,
                                         grad_clip=_clip(self.grad_clip), **self.kw)


@OPTIMIZERS.register()
class SGD:
    CONFIG_SCHEMA = {k: _OPTIMIZER[k] for k in ("weight_decay", "grad_clip", "multi_precision")}

    def __init__(self, weight_decay=None, grad_clip=None, multi_precision=False):
        self.grad_clip, self.wd = grad_clip, weight_decay

    def __call__(self, learning_rate, parameters, weight_decay):
        weight_decay = _l2_default(weight_decay, self.wd)
        return paddle.optimizer.SGD(learning_rate, parameters=parameters, weight_decay=weight_decay,
                                    grad_clip=_clip(self.grad_clip))


@OPTIMIZERS.register()
class AdamW:
    """Decoupled weight decay (`weight_decay`); a `regularizer` section is refused for it."""

    CONFIG_SCHEMA = {"beta1": _BETA, "beta2": _BETA,
                     "epsilon": Field(NUM, text_number=True, min_value=0, min_exclusive=True, max_value=1),
                     **_OPTIMIZER, "amsgrad": Field(bool)}

    def __init__(self, beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=0.01, grad_clip=None,
                 no_weight_decay_name=None, one_dim_param_no_weight_decay=False, multi_precision=False,
                 amsgrad=False):
        self.kw = dict(beta1=beta1, beta2=beta2, epsilon=epsilon, weight_decay=weight_decay,
                       multi_precision=multi_precision, amsgrad=amsgrad)
        self.grad_clip = grad_clip
        self.no_decay = (no_weight_decay_name or "").split()
        self.one_dim = one_dim_param_no_weight_decay

    def __call__(self, learning_rate, parameters, weight_decay):
        if weight_decay is not None:
            raise ConfigError("Optimizer: AdamW decays weights itself (Optimizer.weight_decay); "
                              "remove Optimizer.regularizer")
        params = list(parameters)
        skip = {p.name for p in params
                if (self.one_dim and len(p.shape) == 1) or any(n in p.name for n in self.no_decay)}
        return paddle.optimizer.AdamW(learning_rate, parameters=params, grad_clip=_clip(self.grad_clip),
                                      apply_decay_param_fun=lambda name: name not in skip, **self.kw)


@OPTIMIZERS.register()
class Adam:
    CONFIG_SCHEMA = {"beta1": _BETA, "beta2": _BETA, "epsilon": AdamW.CONFIG_SCHEMA["epsilon"],
                     **{k: _OPTIMIZER[k] for k in ("weight_decay", "grad_clip", "multi_precision")}}

    def __init__(self, beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=None, grad_clip=None,
                 multi_precision=False):
        self.kw = dict(beta1=beta1, beta2=beta2, epsilon=epsilon, multi_precision=multi_precision)
        self.grad_clip, self.wd = grad_clip, weight_decay

    def __call__(self, learning_rate, parameters, weight_decay):
        weight_decay = _l2_default(weight_decay, self.wd)
        return paddle.optimizer.Adam(learning_rate, parameters=parameters, weight_decay=weight_decay,
                                     grad_clip=_clip(self.grad_clip), **self.kw)


def _l2_default(regularizer, weight_decay):
    """The `regularizer` section wins; a bare `weight_decay` number means L2 (PaddleClas)."""
    if regularizer is not None or weight_decay is None:
        return regularizer
    return paddle.regularizer.L2Decay(float(weight_decay))  # (checked by the optimizer's CONFIG_SCHEMA)


def _clip(grad_clip):
    if grad_clip is None:
        return None
    name, kw = split_spec(grad_clip, "Optimizer.grad_clip")
    if name != "ClipGradByGlobalNorm" or set(kw) - {"clip_norm"}:
        raise ConfigError(f"Optimizer.grad_clip: only {{name: ClipGradByGlobalNorm, clip_norm: X}} is supported, "
                          f"got {grad_clip!r}")
    return paddle.nn.ClipGradByGlobalNorm(_CLIP_NORM.check(kw.get("clip_norm", 1.0), "clip_norm",
                                                           "Optimizer.grad_clip"))


def _regularizer(spec):
    if spec is None:
        return None
    name, kw = split_spec(spec, "Optimizer.regularizer")
    coeff = _COEFF.check(kw.get("coeff", 0.0), "coeff", "Optimizer.regularizer")
    if set(kw) - {"coeff"}:
        raise ConfigError(f"Optimizer.regularizer: unknown keys {sorted(set(kw) - {'coeff'})}; valid: name, coeff")
    if name == "L2":
        return paddle.regularizer.L2Decay(coeff)
    if name == "L1":
        return paddle.regularizer.L1Decay(coeff)
    raise ConfigError(f"Optimizer.regularizer.name must be L2 or L1, got {name!r}")


def build_optimizer(spec, parameters, epochs, step_each_epoch):
    """(optimizer, lr_scheduler or None) from the `Optimizer` section."""
    if not isinstance(spec, dict):
        raise ConfigError(f"Optimizer must be a mapping with name, lr, ..., got {spec!r}")
    name, kw = split_spec(spec, "Optimizer")
    lr_spec = kw.pop("lr", None)
    if lr_spec is None:
        raise ConfigError("Optimizer.lr is required, e.g. {name: Cosine, learning_rate: 0.04}")
    regularizer = _regularizer(kw.pop("regularizer", None))
    if isinstance(lr_spec, (int, float)):
        lr_spec = {"name": "Constant", "learning_rate": lr_spec}
    lr_name, lr_kw = split_spec(lr_spec, "Optimizer.lr")
    scheduler = LR_SCHEDULES.build(lr_name, lr_kw, where=f"Optimizer.lr.{lr_name}", epochs=epochs,
                                   step_each_epoch=step_each_epoch)()
    optimizer = OPTIMIZERS.build(name, kw, where=f"Optimizer.{name}")(scheduler, parameters, regularizer)
    return optimizer, scheduler if isinstance(scheduler, paddle.optimizer.lr.LRScheduler) else None
