"""PaddleClas 2.6's own PP-ShiTu pipeline (`paddleclas/deploy/python`), driven as shipped.

Everything that differs from running `python deploy/python/predict_system.py -c
inference_general.yaml` is done from here, never by editing PaddleClas, and is listed in
ADAPTATIONS, which the saved results carry.
"""
import contextlib
import io
import os

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
    "DetPredictor.predict prints one line per image; stdout is captured to a buffer while it runs.",
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
                 image_root=None, data_file=None, index_method="HNSW32", rec_batch_size=32):
    """PaddleClas's inference_general.yaml, as the AttrDict its classes read."""
    from paddleclas.deploy.utils.config import AttrDict, create_attr_dict

    cfg = {
        "Global": {
            "det_inference_model_dir": str(det_dir) if det_dir else "", "rec_inference_model_dir": str(rec_dir),
            "rec_nms_thresold": 0.05, "batch_size": 1, "image_shape": [3, 640, 640], "threshold": 0.0,
            "max_det_results": max_det_results, "label_list": ["foreground"], "use_gpu": False,
            "enable_mkldnn": mkldnn, "cpu_num_threads": threads, "enable_benchmark": False, "use_fp16": False,
            "ir_optim": True, "use_tensorrt": False, "gpu_mem": 8000, "enable_profile": False},
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
