"""A toy training task: its three entry points record the configs they were given."""
from ppshitu.engine.task import Task

CALLS = []


def train(cfg, hooks=()):
    CALLS.append(("train", cfg.Arch.name, cfg.Arch.get("steps")))
    return [{"epoch": 0}]


def evaluate(cfg):
    CALLS.append(("evaluate", cfg.Arch.name, None))
    return {"toy_score": 1.0}


def export(cfg, out_dir=None):
    CALLS.append(("export", cfg.Arch.name, out_dir))
    return out_dir


TASK = Task("toy", train, evaluate, export, eval_mode="retrieval")
