"""Checkpoints as PaddleClas writes them: `prefix.pdparams` (model weights, loadable by
PaddleClas too), `prefix.pdopt` (optimizer, LR schedule, AMP scaler) and
`prefix.pdstates` (JSON counters: epoch, step, best metric, history; never pickled).
Files are written to a temporary name and renamed, so an interrupted save never
leaves a half-written checkpoint under the real name."""
import json
import os

import paddle

from ..config import dump_config
from ..errors import PPShiTuError


class CheckpointError(PPShiTuError):
    pass


def _atomic_paddle_save(obj, path):
    tmp = path + ".tmp"
    paddle.save(obj, tmp)
    os.replace(tmp, path)


def _rename_optimizer_state(state, model, to_structured):
    """Optimizer state keys embed paddle's auto-generated parameter names (linear_6.w_0_velocity_0),
    which differ between two builds of the same model; key them by the structured name instead
    (fc.weight|velocity_0) so a checkpoint loads into any fresh build of the Arch."""
    pairs = [(p.name, name) for name, p in model.named_parameters()]
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


def save_checkpoint(prefix, model, optimizer=None, lr_scheduler=None, scaler=None, states=None, config=None):
    os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
    _atomic_paddle_save(model.state_dict(), prefix + ".pdparams")
    if optimizer is not None:
        opt = {"optimizer": _rename_optimizer_state(optimizer.state_dict(), model, True)}
        if lr_scheduler is not None:
            opt["lr_scheduler"] = lr_scheduler.state_dict()
        if scaler is not None:
            opt["scaler"] = scaler.state_dict()
        _atomic_paddle_save(opt, prefix + ".pdopt")
    with open(prefix + ".pdstates.tmp", "w", encoding="utf-8") as f:
        json.dump(states or {}, f, indent=1)
    os.replace(prefix + ".pdstates.tmp", prefix + ".pdstates")
    if config is not None:  # the config next to the weights says how they were trained
        dump_config(config, os.path.join(os.path.dirname(prefix) or ".", "config.yaml"))


def weights_path(path):
    """`prefix` or `prefix.pdparams` -> the existing .pdparams file, or a clear error."""
    for candidate in (path, path + ".pdparams"):
        if os.path.isfile(candidate):
            return candidate
    raise CheckpointError(f"weights not found: {path} (nor {path}.pdparams)")


def _load(path):
    try:
        return paddle.load(path)
    except Exception as e:  # paddle raises assorted types for a corrupt or foreign file
        raise CheckpointError(f"cannot read {path}: {e}") from None


def load_weights(model, path, where="Global.pretrained_model"):
    """Load a whole model's weights; every model parameter must be present with its shape."""
    path = weights_path(path)
    state = _load(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise CheckpointError(f"{where}: {path} lacks {len(missing)} of the model's tensors "
                              f"(first: {missing[:3]}); was it saved from this Arch?")
    for key, value in own.items():
        if list(state[key].shape) != list(value.shape):
            raise CheckpointError(f"{where}: {path}: {key} has shape {list(state[key].shape)}, the model's has "
                                  f"{list(value.shape)}; was it saved from this Arch?")
    model.set_state_dict({k: state[k] for k in own})
    return path


def load_checkpoint(prefix, model, optimizer=None, lr_scheduler=None, scaler=None):
    """Restore everything `save_checkpoint` wrote; returns the states dict."""
    if prefix.endswith(".pdparams"):
        prefix = prefix[: -len(".pdparams")]
    for ext in (".pdparams", ".pdopt", ".pdstates"):
        if not os.path.isfile(prefix + ext):
            raise CheckpointError(f"Global.checkpoints: {prefix}{ext} not found; a checkpoint is a prefix such as "
                                  f"output/RecModel/epoch_5 with .pdparams, .pdopt and .pdstates files")
    load_weights(model, prefix + ".pdparams", "Global.checkpoints")
    opt = _load(prefix + ".pdopt")
    if optimizer is not None:
        optimizer.set_state_dict(_rename_optimizer_state(opt["optimizer"], model, False))
    if lr_scheduler is not None and "lr_scheduler" in opt:
        lr_scheduler.set_state_dict(opt["lr_scheduler"])
    if scaler is not None and "scaler" in opt:
        scaler.load_state_dict(opt["scaler"])
    with open(prefix + ".pdstates", encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{prefix}.pdstates: not a ppshitu checkpoint state file ({e})") from None
