"""What a training task is (recognition, detection): its three entry points and the Global.eval_mode it
answers to. A task module defines `TASK = Task(...)` (importing this module); ppshitu/tasks.py is the
registry that names it for the `Arch.name`s it trains, and `task_for(cfg)` looks a config's up.

    TASK = Task("recognition", train, evaluate, export, eval_mode="retrieval")
"""
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Task:
    name: str
    train: Callable          # (cfg, hooks=()) -> history
    evaluate: Callable       # cfg -> metrics
    export: Callable         # (cfg, out_dir=None) -> inference.yml dict or directory
    eval_mode: str           # the Global.eval_mode it answers to (PaddleClas's key)
