"""Write a RecModel as an inference directory: the program returning the L2-normalized
embedding, its weights, and `inference.yml` with the eval preprocessing (ppshitu.infer.spec).

PIR (`inference.json`) is written in-process. The legacy format (`inference.pdmodel`) needs
`FLAGS_enable_pir_api=0` from process start, so `export_in_child` runs a fresh interpreter
(`python -m ppshitu.rec.task --export-legacy CONFIG OUT`) for it. This module knows nothing of
configs beyond that: the task builds the model and hands it over.
"""
import os
import subprocess
import sys
import tempfile

from ..config import dump_config
from ..errors import PPShiTuError
from ..infer.spec import write_spec
from ..paddle_import import spend_pir_out_warning

PROGRAM_FILES = ("inference.json", "inference.pdmodel", "inference.pdiparams", "inference.pdiparams.info")


def pir_enabled():
    return os.environ.get("FLAGS_enable_pir_api", "1").lower() not in ("0", "false")


def clear_program(out_dir):
    """Remove a previous export's program files, so the directory never mixes two exports."""
    os.makedirs(out_dir, exist_ok=True)
    for name in PROGRAM_FILES:
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))


def save_program(model, out_dir, image_shape):
    """Trace `model.embed` for [N, 3, H, W] float32 input `x` and save it; returns the embedding size."""
    import paddle

    from .model import EmbeddingNet

    model.eval()
    net = EmbeddingNet(model)
    net.eval()
    _, h, w = image_shape
    spec = [paddle.static.InputSpec([None, 3, h, w], "float32", "x")]
    spend_pir_out_warning()
    static = paddle.jit.to_static(net, input_spec=spec, full_graph=True)
    paddle.jit.save(static, os.path.join(out_dir, "inference"))
    return int(model.embedding_size)


def export_in_child(cfg, out_dir, entry="ppshitu.rec.task"):
    """Run `python -m <entry> --export-legacy CONFIG OUT` with PIR off; returns the embedding size."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = os.path.join(tmp, "config.yaml")
        dump_config(cfg, cfg_path)
        env = dict(os.environ, FLAGS_enable_pir_api="0")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        proc = subprocess.run([sys.executable, "-m", entry, "--export-legacy", cfg_path, out_dir], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise PPShiTuError(f"legacy export failed:\n{proc.stderr[-3000:]}")
        return int(proc.stdout.strip().splitlines()[-1])


def write_rec_spec(out_dir, embedding_size, export_format, preprocess, backbone=None):
    """inference.yml for a recognition model; returns the spec dict."""
    extra = {"backbone": backbone} if backbone else {}
    return write_spec(out_dir, model_type="rec", embedding_size=int(embedding_size), format=export_format,
                      **preprocess, **extra)
