"""Training engine: the task-agnostic trainer, checkpoints, optimizers/LR, retrieval metrics, rec task."""
