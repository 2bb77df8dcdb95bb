"""int8 post-training quantization (NNCF) of an inference directory, for the openvino backend.

    quantize_model("models/demo/rec", images, "models/demo/rec_int8")           # -> the new inference.yml

Calibration images go through the model's own preprocessing (inference.yml, or for PP-ShiTu's published
models the inference config's RecPreProcess / DetPreProcess), one image per sample as the predictors feed
them. The output directory holds `inference.xml/.bin` (the quantized OpenVINO IR) and `inference.yml`:
the source's keys plus `precision: int8`, `format: openvino`, `openvino_model: inference.xml`,
`fingerprint` (of inference.bin: a gallery built with the fp32 model is not queried with this one
unknowingly), `quantized_from` (the source's fingerprint) and `calibration` (how many images, from where).
Run it with `Global.inference_backend: openvino` and `Global.precision: int8`.
"""
import logging
import os
import shutil

import numpy as np

from ..errors import ConfigError
from .runtime import model_files
from .spec import SPEC_FILE, check_model_out_dir, check_spec, fingerprint, read_spec

log = logging.getLogger("ppshitu.infer")

DEFAULT_SUBSET = 300
QUANTIZER_VERSION = 3  # in inference.yml's calibration block: what settings wrote the model


def _nncf():
    try:
        import nncf
    except ImportError as e:
        raise ConfigError("int8 quantization needs nncf (pip install nncf; see requirements.txt)") from e
    return nncf


def _model_type(model_dir, spec, model_type):
    if spec is not None:
        if model_type and model_type != spec["model_type"]:
            raise ConfigError(f"{os.path.join(model_dir, SPEC_FILE)}: model_type is {spec['model_type']!r}, "
                              f"but --model {model_type} was asked for")
        return spec["model_type"]
    if model_type not in ("rec", "det"):
        raise ConfigError(f"{model_dir}: no inference.yml; say which model it is (--model rec|det)")
    return model_type


def _preprocess(model_type, spec, transform_ops, model_dir):
    """(preprocess callable, the inference.yml keys describing it)."""
    if model_type == "rec":
        from .preprocess import RecPreprocess

        if spec is not None:
            pre = RecPreprocess.from_spec(spec)
        elif transform_ops:
            pre = RecPreprocess.from_transform_ops(transform_ops)
            if pre.resize_short or pre.crop_size:
                raise ConfigError("RecPreProcess.transform_ops: a resize_short / CropImage pipeline cannot be "
                                  "described in inference.yml (a stretched ResizeImage{size} can)")
        else:
            raise ConfigError(f"{model_dir}: no inference.yml, so RecPreProcess.transform_ops must say how to "
                              f"pre-process the calibration images")
        keys = {"input_size": pre.input_size, "interpolation": pre.interpolation, "scale": pre.scale,
                "mean": list(pre.mean), "std": list(pre.std)}
        return pre, keys
    from .det import DetPreprocess

    if spec is not None:
        pre = DetPreprocess.from_spec(spec)
    elif transform_ops:
        pre = DetPreprocess.from_transform_ops(transform_ops)
        if pre.keep_ratio:
            raise ConfigError("DetPreProcess.transform_ops: DetResize keep_ratio: true cannot be described in "
                              "inference.yml (keep_ratio: false can)")
    else:
        raise ConfigError(f"{model_dir}: no inference.yml, so DetPreProcess.transform_ops must say how to "
                          f"pre-process the calibration images")
    return pre, pre.spec()


def spread(items, n):
    """`items` reordered so that the first n are spread evenly over the list (a gallery list is sorted by
    class: its first 300 lines may hold a handful of classes), then the rest, as spares."""
    items = list(items)
    if len(items) <= n:
        return items
    picked = sorted({int(i) for i in np.linspace(0, len(items) - 1, n)})
    chosen = set(picked)
    return [items[i] for i in picked] + [x for i, x in enumerate(items) if i not in chosen]


def calibration_items(images, limit):
    """The first `limit` readable images of `spread(images, limit)`: paths stay paths (decoded again when
    NNCF asks, so 300 detector inputs at 640 px need not sit in memory as ~1.5 GB of float32); an
    unreadable one is skipped with one warning, and the count reported."""
    from ..errors import PPShiTuError
    from ..utils.image import as_rgb_uint8, read_image

    out, bad = [], 0
    for item in spread(images, limit):
        if len(out) >= limit:
            break
        try:
            if isinstance(item, (str, os.PathLike)):
                read_image(item)
            else:
                as_rgb_uint8(item)
        except PPShiTuError as e:
            log.warning("calibration: skipped %s", e)
            bad += 1
            continue
        out.append(item)
    if bad:
        log.warning("calibration: %d unreadable image(s) skipped", bad)
    return out


def _rgb(item):
    from ..utils.image import read_image

    return read_image(item) if isinstance(item, (str, os.PathLike)) else item


def _feeds(model_type, preprocess, rgb, input_names):
    if model_type == "rec":
        return {input_names[0]: preprocess(rgb)[None]}
    chw, im_shape, scale_factor = preprocess(rgb)
    feeds = {"image": chw[None], "im_shape": im_shape[None], "scale_factor": scale_factor[None]}
    return {n: feeds[n] for n in input_names}


FLOAT_LAYERS = 1  # the first convolution/matmul layers left in float (openvino.passes.front_layers)


def quantize_model(model_dir, images, out_dir, model_type=None, transform_ops=None, subset_size=DEFAULT_SUBSET,
                   calib_source=None, overwrite=False, fast_bias_correction=False, float_layers=FLOAT_LAYERS):
    """Quantize `model_dir` to int8 with NNCF's post-training quantization; returns the written spec.

    images: paths or RGB uint8 arrays (at least one); subset_size: how many of them NNCF uses.
    transform_ops: RecPreProcess / DetPreProcess.transform_ops, for a directory without inference.yml.
    Defaults chosen on the demo rec model: full bias correction (cosine mean 0.9972 vs 0.9922 with the fast
    one) and the first `float_layers` convolution/matmul layers in float: on the demo rec model
    (EfficientNet-Lite0) quantizing the stem convolution alone cost most of the int8 error (embedding cosine to
    fp32 mean 0.9972 / min 0.971 with it in int8, 0.9985 / 0.991 without)."""
    from .openvino import _ov
    from .openvino.convert import IR_FILES, make_temp_dir, resolve_program
    from .openvino.passes import HEAVY_OPS, dynamic_batch, front_layers, is_quantized, optimize_for_cpu

    ov, nncf = _ov(), _nncf()
    spec = read_spec(model_dir)
    model_type = _model_type(model_dir, spec, model_type)
    pre, pre_keys = _preprocess(model_type, spec, transform_ops, model_dir)
    images = list(images)
    if not images:
        raise ConfigError("quantize: no calibration images")
    if os.path.abspath(out_dir) == os.path.abspath(model_dir):
        raise ConfigError(f"quantize: --out {out_dir} is the source model directory; write to a new one")
    check_model_out_dir(out_dir, overwrite, "quantize: --out")
    program, _ = resolve_program(model_dir)
    model = dynamic_batch(optimize_for_cpu(ov.Core().read_model(program)))
    if is_quantized(model) or (spec or {}).get("precision") == "int8":
        raise ConfigError(f"{model_dir}: already an int8 model")
    input_names = [p.get_any_name() for p in model.inputs]
    if model_type == "det" and "image" not in input_names:
        raise ConfigError(f"{model_dir}: not a PaddleDetection-style detector (inputs {input_names})")
    items = calibration_items(images, int(subset_size))
    if not items:
        raise ConfigError("quantize: none of the calibration images could be read")
    log.info("quantizing %s (%s) with %d calibration images", model_dir, model_type, len(items))
    dataset = nncf.Dataset(items, lambda item: _feeds(model_type, pre, _rgb(item), input_names))
    front = front_layers(model, int(float_layers))
    names = sorted(op.get_friendly_name() for op in model.get_ordered_ops()
                   if op.get_type_name() in HEAVY_OPS and op.get_friendly_name() in front)
    # NMS stays float: its inputs are box coordinates and scores, not activations
    types = ["NonMaxSuppression", "MulticlassNms", "MatrixNms"] if model_type == "det" else []
    quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE,
                              subset_size=len(items), fast_bias_correction=fast_bias_correction,
                              ignored_scope=nncf.IgnoredScope(names=names, types=types, validate=False))

    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = make_temp_dir(parent, ".quantize-")
    try:
        ov.save_model(quantized, os.path.join(tmp, IR_FILES[0]), compress_to_fp16=False)
        source_fp = (spec or {}).get("fingerprint") or fingerprint(model_files(model_dir)[1])
        new = {k: v for k, v in (spec or {}).items() if k not in ("fingerprint", "openvino_model")}
        new.update(model_type=model_type, **pre_keys)
        if model_type == "rec" and "embedding_size" not in new:
            new["embedding_size"] = _embedding_size(quantized, pre, input_names[0])
        if model_type == "det":
            new.setdefault("label_list", ["foreground"])
        new.update(format="openvino", precision="int8", openvino_model=IR_FILES[0],
                   fingerprint=fingerprint(os.path.join(tmp, IR_FILES[1])), quantized_from=source_fp,
                   calibration={"images": len(items), "source": str(calib_source) if calib_source else None,
                                "float_layers": names, "fast_bias_correction": bool(fast_bias_correction),
                                "quantizer_version": QUANTIZER_VERSION, "nncf": getattr(nncf, "__version__", None)})
        written = _write_spec(tmp, new)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


def _write_spec(model_dir, spec):
    """inference.yml with the given fingerprint (spec.write_spec hashes an inference.pdiparams, which an
    OpenVINO-only directory does not have)."""
    import yaml

    path = os.path.join(model_dir, SPEC_FILE)
    check_spec(spec, path)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return spec


def _embedding_size(model, pre, input_name):
    from .openvino import _ov

    compiled = _ov().Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1})
    h, w = pre.input_size
    out = compiled({input_name: np.zeros((1, 3, h, w), np.float32)})
    return int(np.asarray(out[compiled.outputs[0]]).reshape(1, -1).shape[1])
