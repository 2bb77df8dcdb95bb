"""The tasks the tools dispatch to. Importing this module registers them (no import by name).

Set thread counts (`ppshitu.cli.apply_threads`) before importing it: it imports paddle."""
from .det import task as _det_task  # noqa: F401  (registers "det")
from .engine.task import TASKS, task_for  # noqa: F401
from .rec import task as _rec_task  # noqa: F401  (registers "rec")
