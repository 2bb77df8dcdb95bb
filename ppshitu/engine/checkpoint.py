"""Checkpoints as PaddleClas writes them: `prefix.pdparams` (model weights, loadable by
PaddleClas too), `prefix.pdopt` (optimizer, LR schedule, AMP scaler, and the parameters of a loss that has
its own, such as class proxies or a learnable temperature) and
`prefix.pdstates` (JSON counters: epoch, step, best metric, history; never pickled).
Files are written to a temporary name and renamed, so an interrupted save never
leaves a half-written checkpoint under the real name; every write goes through the output folder's
OutputGuard (utils/outputs.py), so a file ppshitu did not write (a user's best_model.pdparams) is never
replaced: training refuses to start into a folder holding such checkpoint-named files, unless
Global.checkpoints resumes from that folder (the user's explicit word that they are this run's)."""
import json
import os

import paddle
import yaml

from .. import weights
from ..config import to_plain
from ..utils.files import read_input_json
from ..utils.outputs import OutputGuard
from ..weights import WeightsError


class CheckpointError(WeightsError):
    pass


CHECKPOINT_EXTS = (".pdparams", ".pdopt", ".pdstates", ".pdema")
CONFIG_NAME = "config.yaml"


def checkpoint_named_files(folder):
    """The files in `folder` a checkpoint save could write over (*.pdparams/.pdopt/.pdstates/.pdema,
    config.yaml)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [os.path.join(folder, n) for n in names if n.endswith(CHECKPOINT_EXTS) or n == CONFIG_NAME]


def output_guard(folder):
    return OutputGuard(folder, "Global.output_dir")


def _guarded_paddle_save(guard, obj, path):
    guard.write_with(path, lambda tmp: paddle.save(obj, tmp))


def _rename_optimizer_state(state, named_parameters, to_structured):
    """Optimizer state keys embed paddle's auto-generated parameter names (linear_6.w_0_velocity_0),
    which differ between two builds of the same model; key them by the structured name instead
    (fc.weight|velocity_0) so a checkpoint loads into any fresh build of the Arch."""
    pairs = [(p.name, name) for name, p in named_parameters]
    src, dst = (0, 1) if to_structured else (1, 0)
    sep_in, sep_out = ("_", "|") if to_structured else ("|", "_")
    pairs.sort(key=lambda pair: -len(pair[src]))  # longest first: linear_1.w_0 before linear_1.w
    out = {}
    for key, value in state.items():
        for pair in pairs:
            if key.startswith(pair[src] + sep_in):
                key = pair[dst] + sep_out + key[len(pair[src]) + 1:]
                break
        out[key] = value
    return out


def trained_parameters(model, loss=None):
    """(structured name, parameter) of everything an optimizer updates: the model's, then the loss's
    under `loss.` (so both key the optimizer state by name)."""
    named = list(model.named_parameters())
    if loss is not None:
        named += [("loss." + n, p) for n, p in loss.named_parameters()]
    return named


def save_checkpoint(prefix, model, optimizer=None, lr_scheduler=None, scaler=None, states=None, config=None,
                    loss=None, guard=None):
    """Write the checkpoint `prefix` through `guard` (an OutputGuard of its folder; one is made and closed
    here when None): a file there that ppshitu did not write is refused (OutputError), never replaced."""
    own = guard is None
    if own:
        guard = output_guard(os.path.dirname(prefix) or ".")
    try:
        _guarded_paddle_save(guard, model.state_dict(), prefix + ".pdparams")
        if optimizer is not None:
            named = trained_parameters(model, loss)
            opt = {"optimizer": _rename_optimizer_state(optimizer.state_dict(), named, True)}
            if loss is not None and loss.state_dict():
                opt["loss"] = loss.state_dict()
            if lr_scheduler is not None:
                opt["lr_scheduler"] = lr_scheduler.state_dict()
            if scaler is not None:
                opt["scaler"] = scaler.state_dict()
            _guarded_paddle_save(guard, opt, prefix + ".pdopt")
        guard.write_text(prefix + ".pdstates", json.dumps(states or {}, indent=1))
        if config is not None:  # the config next to the weights says how they were trained
            guard.write_text(os.path.join(os.path.dirname(prefix) or ".", CONFIG_NAME),
                             yaml.safe_dump(to_plain(config), sort_keys=False, allow_unicode=True))
    finally:
        if own:
            guard.close()


def load_weights(model, path, where="Global.pretrained_model"):
    """Load a whole model's weights (every tensor present, with its shape); returns the file."""
    return weights.load_into(model, path, where, strict=True)[0]


def load_checkpoint(prefix, model, optimizer=None, lr_scheduler=None, scaler=None, loss=None):
    """Restore everything `save_checkpoint` wrote; returns the states dict."""
    if prefix.endswith(".pdparams"):
        prefix = prefix[: -len(".pdparams")]
    for ext in (".pdparams", ".pdopt", ".pdstates"):
        if not os.path.isfile(prefix + ext):
            raise CheckpointError(f"Global.checkpoints: {prefix}{ext} not found; a checkpoint is a prefix such as "
                                  f"output/RecModel/epoch_5 with .pdparams, .pdopt and .pdstates files")
    load_weights(model, prefix + ".pdparams", "Global.checkpoints")
    opt = weights.read_state(prefix + ".pdopt", "Global.checkpoints")
    if loss is not None and loss.state_dict():
        if "loss" not in opt:
            raise CheckpointError(f"Global.checkpoints: {prefix}.pdopt has no state for the loss's parameters; "
                                  f"was it saved with the same Loss.Train?")
        weights.load_into(loss, prefix + ".pdopt", "Global.checkpoints (loss)", strict=True, state=opt["loss"])
    if optimizer is not None:
        optimizer.set_state_dict(_rename_optimizer_state(opt["optimizer"], trained_parameters(model, loss), False))
    if lr_scheduler is not None and "lr_scheduler" in opt:
        lr_scheduler.set_state_dict(opt["lr_scheduler"])
    if scaler is not None and "scaler" in opt:
        scaler.load_state_dict(opt["scaler"])
    return read_input_json(prefix + ".pdstates", "checkpoint state file", error=CheckpointError,
                           invalid="{path}: not a ppshitu checkpoint state file ({e})")
