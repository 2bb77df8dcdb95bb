"""What a training config is for: each task (recognition, detection) registers the `Arch.name`s it
trains and its three entry points; the tools look the config's up here.

    TASKS.register("rec")(Task("rec", ("RecModel",), train, evaluate, export))
    task_for(cfg).train(cfg)
"""
from dataclasses import dataclass
from typing import Callable, Tuple

from ..errors import ConfigError, did_you_mean
from ..registry import Registry

TASKS = Registry("task")


@dataclass(frozen=True)
class Task:
    name: str
    arch_names: Tuple[str, ...]
    train: Callable          # (cfg, hooks=()) -> history
    evaluate: Callable       # cfg -> metrics
    export: Callable         # (cfg, out_dir=None) -> inference.yml dict or directory
    eval_mode: str           # the Global.eval_mode it answers to (PaddleClas's key)


def task_for(cfg):
    """The registered task whose Arch.name the config names (Global.eval_mode must agree)."""
    arch = cfg.get("Arch") or {}
    name = arch.get("name", "RecModel") if isinstance(arch, dict) else None
    tasks = [TASKS.get(n) for n in TASKS.names()]
    for task in tasks:
        if name in task.arch_names:
            mode = (cfg.get("Global") or {}).get("eval_mode")
            if mode and mode != task.eval_mode:
                raise ConfigError(f"Global.eval_mode is {mode!r}, but Arch.name {name} is a {task.name} model "
                                  f"(eval_mode {task.eval_mode!r})")
            return task
    known = [a for t in tasks for a in t.arch_names]
    raise ConfigError(f"Arch.name: {name!r} is not a model ppshitu trains{did_you_mean(str(name), known)}; "
                      f"available: {', '.join(known)}")
