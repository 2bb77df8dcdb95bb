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
QUANTIZER_VERSION = 5  # in inference.yml's calibration block: what settings wrote the model


def _nncf():
    try:
        import nncf
    except ImportError as e:
        raise ConfigError("int8 quantization needs nncf (pip install nncf; see requirements.txt)") from e
    nncf.set_log_level(logging.WARNING)  # its INFO lines list graph nodes; its progress bars stay
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
DEFAULT_TARGET = 0.99  # agreement with fp32 on the calibration set (quantize_check) that the check asks for
CHECK_IMAGES = 120     # calibration images the check and the accuracy control run on (each run is one pass)
REPORT_FILE = "quantize_report.json"


def _settings(nncf, model_type, names, fast_bias_correction, overflow_fix, preset="performance"):
    """nncf.quantize's keyword arguments. overflow_fix: NNCF's OverflowFix (7-bit weights against the 16-bit
    saturation of int8 kernels on CPUs without VNNI) on every layer ("enable", the default) or the first only
    ("first_layer_only"). On every layer the int8 model answers the same on every CPU, so the agreement check
    run where it was quantized holds where it runs: measured on the demo models, calibration check, Zen 4, native
    vs ONEDNN_MAX_CPU_ISA=AVX2 (no VNNI): rec cosine mean 0.9972 / 0.9972 (first layer only: 0.9984 / 0.9942),
    det agreement 0.944 / 0.944 (first layer only: 0.965 / 0.912)."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    # NMS stays float: its inputs are box coordinates and scores, not activations
    types = ["NonMaxSuppression", "MulticlassNms", "MatrixNms"] if model_type == "det" else []
    return dict(preset=nncf.QuantizationPreset(preset), fast_bias_correction=fast_bias_correction,
                ignored_scope=nncf.IgnoredScope(names=names, types=types, validate=False),
                advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix(overflow_fix)))


def quantize_model(model_dir, images, out_dir, model_type=None, transform_ops=None, subset_size=DEFAULT_SUBSET,
                   calib_source=None, overwrite=False, fast_bias_correction=False, float_layers=FLOAT_LAYERS,
                   target=DEFAULT_TARGET, threshold=0.3, accuracy_control="sensitivity",
                   overflow_fix="enable",
                   preset="performance", float_tail=0):
    """Quantize `model_dir` to int8 with NNCF's post-training quantization, check it against fp32 on the
    calibration images (quantize_check: boxes kept / gallery neighbours kept) and, while the agreement is
    below `target`, put the layers that move answers most back in float (`accuracy_control`: "sensitivity",
    ppshitu/infer/quantize_control.py; "nncf", NNCF's quantize_with_accuracy_control, far slower; False: none);
    returns the written spec. The check's outcome, the layers left in float and whether it
    passed go to REPORT_FILE beside the model (Global.precision auto runs only a model that passed).

    images: paths or RGB uint8 arrays (at least one); subset_size: how many of them NNCF uses.
    transform_ops: RecPreProcess / DetPreProcess.transform_ops, for a directory without inference.yml.
    threshold: the detector's score threshold (Global.threshold), below which a box does not count.
    Defaults chosen on the demo models: full bias correction (rec cosine mean 0.9972 vs 0.9922 with the fast
    one), the first `float_layers` convolution/matmul layers in float (the stem convolution alone cost most
    of the rec model's int8 error: cosine mean / min 0.9972 / 0.971 in int8, 0.9985 / 0.991 in float)."""
    from .openvino import _ov
    from .openvino.convert import resolve_program
    from .openvino.passes import dynamic_batch, is_quantized, optimize_for_cpu

    ov, nncf = _ov(), _nncf()
    spec = read_spec(model_dir)
    model_type = _model_type(model_dir, spec, model_type)
    pre, pre_keys = _preprocess(model_type, spec, transform_ops, model_dir)
    images = list(images)
    if not images:
        raise ConfigError("quantize: no calibration images")
    if not 0 < float(target) <= 1:
        raise ConfigError(f"quantize: --target must be in (0, 1], got {target}")
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
    quantized, report = _quantize_checked(
        ov, nncf, model, items, lambda item: _feeds(model_type, pre, _rgb(item), input_names), model_type,
        lambda names: _settings(nncf, model_type, names, fast_bias_correction, overflow_fix, preset),
        _front_names(model, float_layers, float_tail), float(target), float(threshold), accuracy_control)
    report.update(source=str(model_dir), calibration_images=len(items),
                  settings={"float_layers": int(float_layers), "fast_bias_correction": bool(fast_bias_correction),
                            "overflow_fix": overflow_fix, "preset": preset, "float_tail": int(float_tail)})
    return _save(ov, nncf, quantized, out_dir, spec, model_dir, model_type, pre, pre_keys, input_names, items,
                 calib_source, report)


def _front_names(model, float_layers, float_tail=0):
    """The heavy layers among the first `float_layers` from the inputs and the last `float_tail` before the
    outputs (the embedding head, the detector's prediction convolutions)."""
    from .openvino.passes import HEAVY_OPS, front_layers

    front = front_layers(model, int(float_layers))
    heavy = [op for op in model.get_ordered_ops() if op.get_type_name() in HEAVY_OPS]
    names = {op.get_friendly_name() for op in heavy if op.get_friendly_name() in front}
    return sorted(names | _tail_names(model, heavy, int(float_tail)))


def _tail_names(model, heavy, layers):
    """Heavy layers with at most `layers` heavy layers (themselves included) on their way to an output."""
    if layers <= 0:
        return set()
    depth, wanted = {}, {op.get_friendly_name() for op in heavy}
    for op in reversed(model.get_ordered_ops()):
        users = [t.get_node() for out in op.outputs() for t in out.get_target_inputs()]
        name = op.get_friendly_name()
        depth[name] = min((depth[u.get_friendly_name()] for u in users), default=0) + (name in wanted)
    return {n for n in wanted if depth[n] <= layers}


def _quantize_checked(ov, nncf, model, items, feeds, model_type, settings, base_names, target, threshold,
                      accuracy_control):
    """(quantized model, report): plain PTQ with `base_names` in float (settings(names) -> nncf.quantize's
    arguments), its agreement with fp32 on the first CHECK_IMAGES calibration images, and below `target` an
    accuracy control: "sensitivity" (quantize_control: the layers where int8 adds most error back in float,
    1, 2, 4, ... of them) or "nncf" (nncf.quantize_with_accuracy_control: far slower, one compilation per
    quantizer)."""
    from ..utils.cpu import describe
    from .openvino.passes import HEAVY_OPS
    from .quantize_check import AnswerCheck, float_layers

    core = ov.Core()
    compile_ = lambda m: core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})  # noqa: E731
    check_items = items[:CHECK_IMAGES]
    check = AnswerCheck(model_type, check_items, feeds, compile_(model), threshold)
    quantize = lambda names: nncf.quantize(model, nncf.Dataset(items, feeds), subset_size=len(items),  # noqa
                                           **settings(names))
    quantized = quantize(base_names)
    first = check.score(compile_(quantized))
    log.info("int8 check: agreement %.4f with fp32 on %d calibration images (target %.4f)",
             first["agreement"], len(check_items), target)
    report = {"target": target, "threshold": threshold, "plain": first, "accuracy_control": None}
    if first["agreement"] < target and accuracy_control == "nncf":
        quantized = _nncf_accuracy_control(nncf, model, items, feeds, check, settings(base_names), target)
        report["accuracy_control"] = {"method": "nncf", **check.score(compile_(quantized))}
    elif first["agreement"] < target and accuracy_control:
        from .quantize_control import layer_sensitivity, restore_until

        heavy = [op.get_friendly_name() for op in model.get_ordered_ops()
                 if op.get_type_name() in HEAVY_OPS and op.get_friendly_name() not in base_names]
        ranked = layer_sensitivity(ov, model, quantized, items, feeds, heavy)
        quantized, result, names, tried = restore_until(quantize, lambda m: check.score(compile_(m)), ranked,
                                                        target, base_names)
        report["accuracy_control"] = {"method": "sensitivity", **result, "restored": names, "tried": tried,
                                      "ranking": [[n, round(e, 6)] for n, e in ranked[:32]]}
    final = report["accuracy_control"] or first
    report.update(agreement=final["agreement"], passed=bool(final["agreement"] >= target),
                  f32_layers=float_layers(quantized), checked_on=describe())
    return quantized, report


def _nncf_accuracy_control(nncf, model, items, feeds, check, settings, target):
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    indexed = list(enumerate(check.items))
    ac = dict(settings, advanced_quantization_parameters=settings.pop("advanced_parameters"))
    return nncf.quantize_with_accuracy_control(
        model, nncf.Dataset(items, feeds), nncf.Dataset(indexed), check.validation_fn, max_drop=1.0 - target,
        drop_type=nncf.DropType.ABSOLUTE, subset_size=len(items),
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            ranking_subset_size=min(len(indexed), 60)), **ac)


def _save(ov, nncf, quantized, out_dir, spec, model_dir, model_type, pre, pre_keys, input_names, items,
          calib_source, report):
    import json

    from .openvino.convert import IR_FILES, make_temp_dir

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
                                "float_layers": report["f32_layers"],
                                "fast_bias_correction": report["settings"]["fast_bias_correction"],
                                "quantizer_version": QUANTIZER_VERSION, "nncf": getattr(nncf, "__version__", None),
                                "agreement": report["agreement"], "passed": report["passed"]})
        written = _write_spec(tmp, new)
        report["quantized_from"] = source_fp
        with open(os.path.join(tmp, REPORT_FILE), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
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

    compiled = _ov().Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
    h, w = pre.input_size
    out = compiled({input_name: np.zeros((1, 3, h, w), np.float32)})
    return int(np.asarray(out[compiled.outputs[0]]).reshape(1, -1).shape[1])
