"""The tasks the tools dispatch to: `Arch.name` -> the module's TASK (an engine.task.Task), one line each,
imported when a config names it (`ppshitu train` on a RecModel config never imports the detector's task).

    task_for(cfg).train(cfg)

Set thread counts (`ppshitu.cli.apply_threads`) before calling task_for: the task imports paddle.
"""
from .errors import ConfigError, did_you_mean
from .registry import Registry

TASKS = Registry("model", {
    "RecModel": "ppshitu.rec.task:TASK",
    "PicoDet": "ppshitu.det.task:TASK",
    "ClipModel": "ppshitu.clip.task:TASK",
})


def task_for(cfg):
    """The registered task whose Arch.name the config names (Global.eval_mode must agree)."""
    arch = cfg.get("Arch") or {}
    name = arch.get("name", "RecModel") if isinstance(arch, dict) else None
    if not isinstance(name, str) or name not in TASKS:
        known = TASKS.names()
        raise ConfigError(f"Arch.name: {name!r} is not a model ppshitu trains{did_you_mean(str(name), known)}; "
                          f"available: {', '.join(known)}")
    task = TASKS.get(name)
    mode = (cfg.get("Global") or {}).get("eval_mode")
    if mode and mode != task.eval_mode:
        raise ConfigError(f"Global.eval_mode is {mode!r}, but Arch.name {name} is a {task.name} model "
                          f"(eval_mode {task.eval_mode!r})")
    return task
