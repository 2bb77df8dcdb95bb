"""Export a RecModel to an inference directory: the program returning the L2-normalized
embedding, its weights, and `inference.yml` with the eval preprocessing (ppshitu.infer.spec).

PIR (`inference.json`) is written in-process. The legacy format (`inference.pdmodel`,
`Global.export_format: legacy`) needs `FLAGS_enable_pir_api=0` from process start, so
it is written by a child process running this module.
"""
import argparse
import logging
import os
import subprocess
import sys
import tempfile

from ..config import dump_config, load_config
from ..errors import ConfigError, PPShiTuError
from ..infer.spec import write_spec
from ..schemas import TRAIN_SCHEMA

log = logging.getLogger("ppshitu.export")


def _pir_enabled():
    return os.environ.get("FLAGS_enable_pir_api", "1").lower() not in ("0", "false")


def _save_program(cfg, out_dir):
    import paddle

    from ..modeling.rec_model import EmbeddingNet
    from .rec_task import build_model

    model = build_model(cfg, with_head=False)
    model.eval()
    net = EmbeddingNet(model)
    net.eval()
    _, h, w = cfg.Global.image_shape
    spec = [paddle.static.InputSpec([None, 3, h, w], "float32", "x")]
    static = paddle.jit.to_static(net, input_spec=spec, full_graph=True)
    paddle.jit.save(static, os.path.join(out_dir, "inference"))
    return model.embedding_size


def export_rec(cfg, out_dir):
    """Write `out_dir` (inference program + weights + inference.yml); returns out_dir."""
    from .rec_task import preprocessing_spec

    if not cfg.Global.pretrained_model:
        raise ConfigError("Global.pretrained_model is required to export, e.g. "
                          "-o Global.pretrained_model=output/RecModel/best_model")
    pre = preprocessing_spec(cfg)  # fail on an unexportable pipeline before any work
    os.makedirs(out_dir, exist_ok=True)
    legacy = cfg.Global.export_format == "legacy"
    for stale in ("inference.json", "inference.pdmodel", "inference.pdiparams", "inference.pdiparams.info"):
        if os.path.exists(os.path.join(out_dir, stale)):
            os.remove(os.path.join(out_dir, stale))
    if legacy and _pir_enabled():
        embedding_size = _export_in_child(cfg, out_dir)
    else:
        embedding_size = _save_program(cfg, out_dir)
    spec = write_spec(out_dir, model_type="rec", embedding_size=int(embedding_size),
                      format="legacy" if legacy else "pir", **pre)
    log.info("exported %s (%s, embedding %d, fingerprint %s)", out_dir, spec["format"], embedding_size,
             spec["fingerprint"])
    return out_dir


def _export_in_child(cfg, out_dir):
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = os.path.join(tmp, "config.yaml")
        dump_config(cfg, cfg_path)
        env = dict(os.environ, FLAGS_enable_pir_api="0")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        proc = subprocess.run([sys.executable, "-m", "ppshitu.engine.export", cfg_path, out_dir], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise PPShiTuError(f"legacy export failed:\n{proc.stderr[-3000:]}")
        return int(proc.stdout.strip().splitlines()[-1])


def _child_main():
    parser = argparse.ArgumentParser(description="legacy-format export (run by export_rec)")
    parser.add_argument("config")
    parser.add_argument("out_dir")
    args = parser.parse_args()
    print(_save_program(load_config(args.config, (), TRAIN_SCHEMA), args.out_dir))


if __name__ == "__main__":
    _child_main()
