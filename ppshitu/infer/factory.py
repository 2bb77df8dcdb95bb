"""The one place that turns an inference config (PP-ShiTu's Global / DetPreProcess / RecPreProcess /
IndexProcess) into predictors. predict_system, build_gallery, eval_system, the service and the
benchmarks all build them here, so a model runs with the same runtime settings everywhere.

    rec = rec_predictor(cfg)
    det = det_predictor(cfg)                 # None when Global.det_inference_model_dir is empty

Both models run on `Global.inference_backend` (a registered runtime: paddle | openvino) in `Global.precision`
(fp32 | bf16 | int8 | auto; unset: bf16 when enable_mkldnn_bfloat16, else auto). auto, chosen per model for the CPU
(ppshitu/infer/precision.py), matters on openvino only: bf16 where native, else the int8 model beside the fp32
one that passed its agreement check, else fp32; on paddle it is fp32. Explicit int8 needs models written by
tools/quantize.py (point both model dirs at them); bf16 on a CPU without native bf16, or int8 on a model that
is not quantized, is refused by the runtime with the reason.
"""
from ..errors import ConfigError
from .runtime import runtime_class

REC_BATCH = 32  # the crops of a query and gallery chunks go through the network in batches up to this


def runtime_options(cfg, backend=None):
    """Global keys -> the runtime's options (ppshitu.infer.runtime): the common ones here, the rest from the
    selected runtime's own `config_options` (a new runtime adds no line here). `backend`: this runtime
    instead of Global.inference_backend's."""
    from .precision import auto_float, requested

    g = cfg["Global"]
    backend = backend or g.get("inference_backend") or "paddle"
    precision = requested(g)
    if precision == "auto":  # no model to look beside: the float precision auto would pick
        precision = auto_float(backend)[0]
    return {"backend": backend, "use_gpu": bool(g.get("use_gpu", False)),
            "cpu_threads": int(g.get("cpu_num_threads", 2)), "precision": precision,
            **runtime_class(backend).config_options(g)}


def rec_predictor(cfg, precision=None):
    from .rec import RecPredictor  # paddle loads only when a model is needed

    g = cfg["Global"]
    model_dir = g.get("rec_inference_model_dir") or g.get("inference_model_dir")
    if not model_dir:
        raise ConfigError("Global.rec_inference_model_dir is required (an exported recognition model)")
    batch = max(REC_BATCH, int((cfg.get("IndexProcess") or {}).get("batch_size") or REC_BATCH))
    model_dir, options, choice = model_options(cfg, model_dir, "rec", _backend_for(model_dir), precision)
    rec = RecPredictor(model_dir, preprocess=(cfg.get("RecPreProcess") or {}).get("transform_ops"),
                       max_batch_size=batch, **options)
    rec.precision_choice = choice
    # horizontal-flip averaging (RecPreProcess.flip_average): the Embedder flips, the fingerprint records it
    rec.flip_average = bool((cfg.get("RecPreProcess") or {}).get("flip_average", False))
    return rec


def model_options(cfg, model_dir, kind, backend=None, precision=None):
    """(model dir, runtime options, Choice) for one model: Global.precision (or `precision`) resolved for it,
    auto's choice printed once (ppshitu.infer.precision)."""
    from .precision import announce, choose_precision, requested

    options = runtime_options(cfg, backend)
    asked = precision or requested(cfg["Global"])
    choice = choose_precision(model_dir, kind, options["backend"], asked)
    if asked == "auto":
        announce(kind, choice)
    options["precision"] = choice.precision
    return choice.model_dir, options, choice


def _backend_for(model_dir):
    """An imported ONNX model (tools/import_model.py) runs on OpenVINO whatever Global.inference_backend
    says (Paddle Inference cannot read ONNX); None: the config's backend."""
    from .runtime_base import is_onnx_dir

    return "openvino" if is_onnx_dir(model_dir) else None


def text_predictor(cfg, rec):
    """The text encoder that belongs to `rec`'s image encoder (an imported text-image model), on OpenVINO
    with the config's precision and threads; TextModelError when `rec`'s model has none."""
    from .text import TextPredictor

    return TextPredictor(rec.model_dir, **runtime_options(cfg, "openvino"))


def det_predictor(cfg, max_det_results=None):
    """The mainbody detector, or None without Global.det_inference_model_dir."""
    from .det import DetPredictor

    g = cfg["Global"]
    if not g.get("det_inference_model_dir"):
        return None
    model_dir, options, _ = model_options(cfg, g["det_inference_model_dir"], "det")
    return DetPredictor(model_dir, threshold=g.get("threshold", 0.2),
                        max_det_results=max_det_results or g.get("max_det_results", 5),
                        preprocess=(cfg.get("DetPreProcess") or {}).get("transform_ops"), **options)
