"""Helpers of the photo-library tests: the demo models and the -c/-o arguments of the tools."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "inference", "inference_general.yaml")
REC_MODEL = os.path.join(ROOT, "models", "demo", "rec")
DET_MODEL = os.path.join(ROOT, "models", "demo", "det")


def overrides(index_dir=None, **extra):
    o = [f"Global.rec_inference_model_dir={REC_MODEL}", f"Global.det_inference_model_dir={DET_MODEL}",
         "Global.cpu_num_threads=2", "IndexProcess.batch_size=16"]
    if index_dir is not None:
        o.append(f"IndexProcess.index_dir={index_dir}")
    o += [f"{k}={v}" for k, v in extra.items()]
    return o


def make_cfg(index_dir=None, **extra):
    from ppshitu.config import load_config
    from ppshitu.schemas import INFER_SCHEMA

    return load_config(CONFIG, overrides(index_dir, **extra), INFER_SCHEMA)


def cli(index_dir=None, **extra):
    """-c/-o arguments of a tool."""
    return ["-c", CONFIG] + [a for o in overrides(index_dir, **extra) for a in ("-o", o)]
