"""Which task a training config is: detection configs go to `ppshitu.det.task`, the rest to
the recognition task. Both modules offer train(cfg), evaluate(cfg), export(cfg, out_dir)."""
import importlib
import os

DET_ARCHS = ("PicoDet", "YOLOv3", "PPYOLOE", "FasterRCNN")


def is_detection(cfg):
    arch = cfg.get("Arch") or {}
    return isinstance(arch, dict) and (arch.get("name") in DET_ARCHS or cfg.Global.get("eval_mode") == "detection")


def task_module(cfg):
    """The task module, imported lazily (each pulls in its own framework adapter)."""
    if cfg.Global.get("num_threads"):
        # must precede paddle's import to take effect (paddle would default to 1 thread)
        os.environ["OMP_NUM_THREADS"] = str(cfg.Global.num_threads)
    return importlib.import_module("ppshitu.det.task" if is_detection(cfg) else "ppshitu.engine.rec_task")
