"""PaddleClas 2.6's own PP-ShiTu pipeline (`paddleclas/deploy/python`), driven as shipped.

Everything that differs from running `python deploy/python/predict_system.py -c
inference_general.yaml` is done from here, never by editing PaddleClas, and is listed in
ADAPTATIONS, which the saved results carry.

As a whole process, in place of deploy/python/build_gallery.py and predict_system.py (run_all's
process rows time it, start-up included):

    python bench/shitu_reference.py build_gallery '{"rec_dir": ..., "index_dir": ..., "image_root": ..., "data_file": ...}'
    python bench/shitu_reference.py predict_system '{"rec_dir": ..., "det_dir": ..., "index_dir": ...,
                                                     "infer_imgs": DIR, "output_dir": ..., "font_path": ...}'
"""
import contextlib
import functools
import io
import json
import os
import sys

from paddle import inference

ADAPTATIONS = [
    "paddleclas.deploy.utils.predictor.Config is replaced by a factory that opens the model file "
    "present in the directory (inference.pdmodel, else inference.json) with an explicit "
    "(program, params) pair: PaddleClas calls Config(dir, 'inference'), which in Paddle 3.3 picks the "
    "format by FLAGS_enable_pir_api, so one process could not load the legacy rec model and the PIR-only "
    "detector (legacy export of LCNet/PicoHead fails in 3.3.1).",
    "For PIR (inference.json) models the factory's Config ignores enable_memory_optim(): Paddle 3.3 "
    "fails in create_predictor with it ('Not find predictor_id 0 and pass_name memory_optimize_pass'). "
    "Legacy models keep it, as shipped.",
    "The config is PaddleClas's inference_general.yaml as a dict, with the benchmark's model dirs, "
    "use_gpu False, cpu_num_threads and enable_mkldnn from the benchmark, Global.threshold 0 and "
    "max_det_results n (random-weight detector: every scene yields exactly n boxes), IndexProcess "
    "paths to the generated gallery.",
    "When PaddleClas did not call enable_mkldnn() (Global.enable_mkldnn False), disable_mkldnn() is called "
    "before create_predictor: Paddle 3.3 turns oneDNN on by default and PaddleClas never turns it off, so "
    "enable_mkldnn: False would still run oneDNN.",
    "DetPredictor.predict prints one line per image; stdout is captured to a buffer while it runs (whole-process "
    "rows: left as shipped, into the pipe the benchmark reads).",
    "Whole-process rows run `python bench/shitu_reference.py build_gallery|predict_system JSON`, i.e. "
    "GalleryBuilder(config) and predict_system.main(config) as their scripts do, with the config above "
    "(Global.infer_imgs a folder, Global.output_dir a fresh temp folder). main's draw_bbox_results gets "
    "font_path = the font ppshitu draws with: its default ./utils/simfang.ttf is relative to deploy/ in the "
    "PaddleClas repo and the pip package ships no font. `paddleclas` is entered as a bare package there, so "
    "importing paddleclas.deploy.* skips the pip package's __init__ (it imports the whole ppcls model zoo: "
    "~2 s and ~160 MB more at start-up here), as deploy/python/*.py run from a PaddleClas checkout never "
    "import it either.",
    "Randomly initialised models of the published architectures (no download): MobileNetV1 @224 + "
    "512-d FC neck for recognition, PicoDet-LCNet x2.5 @640 for the mainbody detector; the same files "
    "feed both pipelines.",
]


class _Config:
    """Stands in for paddle.inference.Config inside PaddleClas's Predictor (see ADAPTATIONS)."""

    def __init__(self, model_dir, prefix="inference"):
        legacy = os.path.join(model_dir, prefix + ".pdmodel")
        prog = legacy if os.path.isfile(legacy) else os.path.join(model_dir, prefix + ".json")
        self._config = inference.Config(prog, os.path.join(model_dir, prefix + ".pdiparams"))
        self._pir = prog.endswith(".json")
        self._mkldnn = False

    def enable_mkldnn(self):
        self._mkldnn = True
        self._config.enable_mkldnn()

    def enable_memory_optim(self, *args):
        if not self._pir:  # PIR models fail in create_predictor with it
            self._config.enable_memory_optim(*args)

    def __getattr__(self, name):
        return getattr(self._config, name)


def _create_predictor(config):
    if isinstance(config, _Config):
        if not config._mkldnn:  # on by default in Paddle 3.3; PaddleClas never turns it off
            config._config.disable_mkldnn()
        config = config._config
    return inference.create_predictor(config)


def _patch():
    from paddleclas.deploy.utils import predictor

    predictor.Config = _Config
    predictor.create_predictor = _create_predictor


def shitu_config(rec_dir, det_dir=None, threads=2, mkldnn=True, max_det_results=5, index_dir=None,
                 image_root=None, data_file=None, index_method="HNSW32", rec_batch_size=32, infer_imgs=None,
                 output_dir=None):
    """PaddleClas's inference_general.yaml, as the AttrDict its classes read."""
    from paddleclas.deploy.utils.config import AttrDict, create_attr_dict

    cfg = {
        "Global": {
            "det_inference_model_dir": str(det_dir) if det_dir else "", "rec_inference_model_dir": str(rec_dir),
            "rec_nms_thresold": 0.05, "batch_size": 1, "image_shape": [3, 640, 640], "threshold": 0.0,
            "max_det_results": max_det_results, "label_list": ["foreground"], "use_gpu": False,
            "enable_mkldnn": mkldnn, "cpu_num_threads": threads, "enable_benchmark": False, "use_fp16": False,
            "ir_optim": True, "use_tensorrt": False, "gpu_mem": 8000, "enable_profile": False,
            "infer_imgs": str(infer_imgs or ""), "output_dir": str(output_dir or "output")},
        "DetPreProcess": {"transform_ops": [
            {"DetResize": {"interp": 2, "keep_ratio": False, "target_size": [640, 640]}},
            {"DetNormalizeImage": {"is_scale": True, "mean": [0.485, 0.456, 0.406],
                                   "std": [0.229, 0.224, 0.225]}},
            {"DetPermute": {}}]},
        "DetPostProcess": {},
        "RecPreProcess": {"transform_ops": [
            {"ResizeImage": {"size": [224, 224], "return_numpy": False, "interpolation": "bilinear",
                             "backend": "cv2"}},
            {"NormalizeImage": {"scale": 0.00392157, "mean": [0.485, 0.456, 0.406],
                                "std": [0.229, 0.224, 0.225], "order": "hwc"}},
            {"ToCHWImage": None}]},
        "RecPostProcess": None,
        "IndexProcess": {
            "index_method": index_method, "image_root": str(image_root or ""), "index_dir": str(index_dir or ""),
            "data_file": str(data_file or ""), "index_operation": "new", "delimiter": "\t", "dist_type": "IP",
            "embedding_size": 512, "batch_size": rec_batch_size, "return_k": 5, "score_thres": 0.5},
    }
    cfg = AttrDict(cfg)
    create_attr_dict(cfg)
    return cfg


def rec_predictor(cfg):
    _patch()
    from paddleclas.deploy.python.predict_rec import RecPredictor

    return RecPredictor(cfg)


def det_predictor(cfg):
    _patch()
    from paddleclas.deploy.python.predict_det import DetPredictor

    return _Quiet(DetPredictor(cfg))


def build_gallery(cfg):
    """GalleryBuilder does everything in its constructor: read list, decode, embed, index, save."""
    _patch()
    from paddleclas.deploy.python.build_gallery import GalleryBuilder

    return GalleryBuilder(cfg)


def system_predictor(cfg):
    _patch()
    from paddleclas.deploy.python.predict_system import SystemPredictor

    system = SystemPredictor(cfg)
    if system.det_predictor is not None:
        system.det_predictor = _Quiet(system.det_predictor)
    return system


class _Quiet:
    """Runs DetPredictor.predict with its per-image print captured."""

    def __init__(self, det):
        self._det = det

    def predict(self, image, *args, **kwargs):
        with contextlib.redirect_stdout(io.StringIO()):
            return self._det.predict(image, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._det, name)


def predict_system_main(cfg, font_path=None):
    """PaddleClas's predict_system.main as shipped: per image of Global.infer_imgs cv2.imread, predict,
    draw_bbox_results (draws, saves a JPEG into Global.output_dir) and print."""
    _patch()
    from paddleclas.deploy.python import predict_system
    from paddleclas.deploy.utils.draw_bbox import draw_bbox_results

    if font_path:
        predict_system.draw_bbox_results = functools.partial(draw_bbox_results, font_path=font_path)
    predict_system.main(cfg)


def _deploy_only():
    """`paddleclas` as a bare package (see ADAPTATIONS): deploy/ imports only paddleclas.deploy.*, and a
    user running deploy/python/*.py from a PaddleClas checkout pays no ppcls import at start-up."""
    import importlib.util
    import types

    if "paddleclas" not in sys.modules:
        pkg = types.ModuleType("paddleclas")
        pkg.__path__ = list(importlib.util.find_spec("paddleclas").submodule_search_locations)
        sys.modules["paddleclas"] = pkg


def main(argv):
    """`build_gallery JSON` | `predict_system JSON`: one of PP-ShiTu's two scripts as a whole process."""
    _deploy_only()
    command, a = argv[0], json.loads(argv[1])
    cfg = shitu_config(a["rec_dir"], a.get("det_dir"), threads=a.get("threads", 2), mkldnn=a.get("mkldnn", True),
                       max_det_results=a.get("max_det", 5), index_dir=a.get("index_dir"),
                       image_root=a.get("image_root"), data_file=a.get("data_file"),
                       index_method=a.get("index_method", "HNSW32"), infer_imgs=a.get("infer_imgs"),
                       output_dir=a.get("output_dir"))
    if command == "build_gallery":
        build_gallery(cfg)
    elif command == "predict_system":
        predict_system_main(cfg, a.get("font_path"))
    else:
        raise SystemExit(f"unknown command {command!r}: build_gallery | predict_system")


if __name__ == "__main__":
    main(sys.argv[1:])
