"""Training engine, what both models share: the task-agnostic trainer and its hooks, checkpoints, optimizers/LR,
the Task type (task.py) and the one backbone registry (backbones.py, with backbone_base.py)."""
