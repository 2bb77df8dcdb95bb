"""Randomly initialised models of the real architectures, exported once into the bench cache.

Speed does not depend on trained weights, so the benchmark needs no download:
  rec_pir/, rec_legacy/   MobileNetV1 @224 + 512-d FC neck (PP-ShiTu's MobileNetV1_retrieval),
                          the same weights in Paddle 3's PIR format and the pre-3.0 format
  det_pir/                PicoDet-LCNet x2.5 @640 (PP-ShiTu's mainbody detector shape), PIR: what
                          ppshitu's det export writes
  det_legacy/             the same network and weights in the pre-3.0 format (bench/bench_runtimes.py
                          only: OpenVINO's direct read of it is the speed the PIR model's conversion must
                          match). Paddle 3.3.1's legacy exporter fails on it as shipped: it replaced
                          paddle.multiply / sigmoid / sqrt / ... with `_C_ops` calls that take PIR values
                          only; `_patch_legacy_static` gives them legacy-op versions in the exporting process

Each export runs in its own process because the format is chosen by FLAGS_enable_pir_api,
which Paddle reads at start-up. `python bench/bench_models.py <kind> <format> <out_dir>` is that
process; `ensure_models()` drives it and skips what is already exported.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
MODELS = CACHE / "models"

REC_INPUT = 224
EMBEDDING_SIZE = 512
DET_INPUT = 640
IMAGENET = {"scale": 1 / 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

# PP-ShiTu's mainbody detector (picodet_lcnet_x2_5_640_mainbody): LCNet x2.5, a 4-level PAN, GFL head.
DET_ARCH = {
    "name": "PicoDet", "class_num": 1,
    "backbone": {"name": "LCNet", "scale": 2.5, "feature_maps": [3, 4, 5]},
    "neck": {"name": "LCPAN", "out_channels": 160, "use_depthwise": True, "num_features": 4},
    "head": {"name": "PicoHeadV2",
             "conv_feat": {"name": "PicoFeat", "feat_in": 160, "feat_out": 160, "num_convs": 4,
                           "num_fpn_stride": 4, "norm_type": "bn", "share_cls_reg": True, "use_se": True},
             "fpn_stride": [8, 16, 32, 64], "feat_in_chan": 160, "prior_prob": 0.01, "reg_max": 7,
             "cell_offset": 0.5, "grid_cell_scale": 5.0, "static_assigner_epoch": 100,
             "use_align_head": True,
             "static_assigner": {"name": "ATSSAssigner", "topk": 9, "force_gt_matching": False},
             "assigner": {"name": "TaskAlignedAssigner", "topk": 13, "alpha": 1.0, "beta": 6.0},
             "loss_class": {"name": "VarifocalLoss", "use_sigmoid": False, "iou_weighted": True,
                            "loss_weight": 1.0},
             "loss_dfl": {"name": "DistributionFocalLoss", "loss_weight": 0.5},
             "loss_bbox": {"name": "GIoULoss", "loss_weight": 2.5}},
    # PP-ShiTu keeps the detector's top boxes by score, so NMS here keeps a generous top-k.
    "nms": {"score_threshold": 0.0, "nms_threshold": 0.6, "nms_top_k": 1000, "keep_top_k": 100},
}


def model_dir(kind, fmt):
    return MODELS / f"{kind}_{fmt}"


def _export_rec(out_dir):
    import paddle
    from paddleclas.ppcls.arch import build_model

    paddle.seed(0)
    arch = {"name": "RecModel", "Backbone": {"name": "MobileNetV1", "pretrained": False},
            "BackboneStopLayer": {"name": "flatten"},
            "Neck": {"name": "FC", "embedding_size": 1024, "class_num": EMBEDDING_SIZE}}
    net = build_model({"Arch": arch}, mode="eval")

    class Embedder(paddle.nn.Layer):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            f = self.net(x)["features"]
            # linalg.norm + divide is the L2 normalisation that also exports in legacy mode
            return f / paddle.linalg.norm(f, p=2, axis=-1, keepdim=True)

    model = Embedder(net)
    model.eval()
    spec = [paddle.static.InputSpec([None, 3, REC_INPUT, REC_INPUT], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), str(out_dir / "inference"))
    return {"model_type": "rec", "input_size": [REC_INPUT, REC_INPUT], "interpolation": "bilinear",
            "embedding_size": EMBEDDING_SIZE, **IMAGENET}


def _export_det(out_dir):
    import paddle
    from ppshitu.det.model import build_model

    paddle.seed(0)

    class Detector(paddle.nn.Layer):
        """PicoDetModel.forward with two changes for random weights, so both pipelines crop the
        same realistic boxes: boxes are clipped to the image (PP-ShiTu crops unclipped boxes, and
        a negative corner gives an empty crop and a cv2 error), and scores get a bonus of
        1e-3 x the box's image fraction (random weights score every box alike: ties would let
        the two pipelines keep different boxes, mostly tiny ones). `im_shape` is not an input:
        PIR export refuses unused inputs; both predictors feed only the inputs declared."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image, scale_factor):
            net = self.net
            scores, boxes = net.head(net.features(image), export_post_process=True)
            sy, sx = paddle.split(scale_factor, 2, axis=-1)
            scale = paddle.concat([sx, sy, sx, sy], axis=-1).reshape([-1, 1, 4])
            size = paddle.full([1, 1, 4], float(DET_INPUT), "float32") / scale  # original W, H, W, H
            boxes = paddle.maximum(paddle.minimum(boxes / scale, size), paddle.zeros_like(size))
            area = (boxes[:, :, 2] - boxes[:, :, 0]) * (boxes[:, :, 3] - boxes[:, :, 1])
            frac = area / (size[:, :, 0] * size[:, :, 1])
            scores = scores + 1e-3 * frac.unsqueeze(1)
            nms = net.nms
            bbox, _, bbox_num = paddle._C_ops.multiclass_nms3(
                boxes, scores, None, float(nms["score_threshold"]), nms["nms_top_k"], nms["keep_top_k"],
                float(nms["nms_threshold"]), False, 1.0, -1)
            return bbox, bbox_num

    model = Detector(build_model(DET_ARCH))
    model.eval()
    spec = [paddle.static.InputSpec([None, 3, DET_INPUT, DET_INPUT], "float32", "image"),
            paddle.static.InputSpec([None, 2], "float32", "scale_factor")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), str(out_dir / "inference"))
    # PP-ShiTu's mainbody DetResize: stretched to 640x640 with interp 2 (bicubic)
    return {"model_type": "det", "input_size": [DET_INPUT, DET_INPUT], "interpolation": "bicubic",
            "label_list": ["foreground"], **IMAGENET}


def _patch_legacy_static():
    """In a FLAGS_enable_pir_api=0 process: legacy-op versions of the functions Paddle 3.3.1 routes to
    PIR-only `_C_ops` (multiply, maximum, minimum, matmul, sigmoid, sqrt, exp, ... and
    `_C_ops.multiclass_nms3`), used when their argument is a legacy static Variable."""
    import paddle
    import paddle.nn.functional as F
    from paddle.base import framework
    from paddle.base.layer_helper import LayerHelper

    def legacy(v):
        return isinstance(v, framework.Variable)

    def append(op, inputs, attrs=None, outputs=("Out",), dtypes=None):
        helper = LayerHelper(op)
        first = next(iter(inputs.values()))
        outs = {o: helper.create_variable_for_type_inference((dtypes or {}).get(o, first.dtype)) for o in outputs}
        helper.append_op(type=op, inputs=inputs, outputs=outs, attrs=attrs or {})
        return outs

    def unary(name, orig):
        def fn(x, *args, **kwargs):
            return append(name, {"X": x})["Out"] if legacy(x) else orig(x, *args, **kwargs)
        return fn

    def binary(op, orig):
        def fn(x, y, *args, **kwargs):
            if legacy(x) or legacy(y):
                return append(op, {"X": x, "Y": y}, {"axis": -1})["Out"]
            return orig(x, y, *args, **kwargs)
        return fn

    def matmul(orig):
        def fn(x, y, transpose_x=False, transpose_y=False, name=None):
            if legacy(x) or legacy(y):
                return append("matmul_v2", {"X": x, "Y": y}, {"trans_x": transpose_x, "trans_y": transpose_y})["Out"]
            return orig(x, y, transpose_x, transpose_y, name)
        return fn

    patched = {name: unary(name, getattr(paddle, name))
               for name in ("sigmoid", "sqrt", "exp", "tanh", "abs", "log", "floor", "ceil", "rsqrt")}
    patched.update({name: binary(op, getattr(paddle, name)) for name, op in
                    (("multiply", "elementwise_mul"), ("maximum", "elementwise_max"),
                     ("minimum", "elementwise_min"))})
    patched["matmul"] = matmul(paddle.matmul)
    for name, fn in patched.items():
        for holder in (paddle, paddle.tensor, framework.Variable):
            setattr(holder, name, fn)
        if hasattr(F, name):
            setattr(F, name, fn)

    nms3 = paddle._C_ops.multiclass_nms3

    def multiclass_nms3(bboxes, scores, rois_num, score_threshold, nms_top_k, keep_top_k, nms_threshold,
                        normalized, nms_eta, background_label):
        if not legacy(bboxes):
            return nms3(bboxes, scores, rois_num, score_threshold, nms_top_k, keep_top_k, nms_threshold,
                        normalized, nms_eta, background_label)
        outs = append("multiclass_nms3", {"BBoxes": bboxes, "Scores": scores},
                      {"background_label": background_label, "score_threshold": score_threshold,
                       "nms_top_k": nms_top_k, "nms_threshold": nms_threshold, "keep_top_k": keep_top_k,
                       "nms_eta": nms_eta, "normalized": normalized},
                      outputs=("Out", "Index", "NmsRoisNum"), dtypes={"Index": "int32", "NmsRoisNum": "int32"})
        return outs["Out"], outs["Index"], outs["NmsRoisNum"]
    paddle._C_ops.multiclass_nms3 = multiclass_nms3


def _export_main(kind, fmt, out_dir):
    sys.path.insert(0, str(ROOT))
    from ppshitu.infer.spec import write_spec

    if kind == "det" and fmt == "legacy":
        _patch_legacy_static()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = {"rec": _export_rec, "det": _export_det}[kind](out_dir)
    write_spec(str(out_dir), **spec, format=fmt)


def export(kind, fmt, timeout=600):
    """Export one model into the cache (in a fresh process); returns its directory."""
    out = model_dir(kind, fmt)
    if (out / "inference.yml").is_file():
        return out
    env = dict(os.environ, FLAGS_enable_pir_api="1" if fmt == "pir" else "0")
    tmp = out.with_name(out.name + ".tmp")
    proc = subprocess.run([sys.executable, __file__, kind, fmt, str(tmp)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"exporting {kind} in {fmt} format failed:\n{tail}")
    tmp.rename(out)
    return out


def ensure_models():
    """{name: dir} of every model the benchmark needs, exporting the missing ones."""
    return {"rec_pir": export("rec", "pir"), "rec_legacy": export("rec", "legacy"), "det_pir": export("det", "pir")}


def ensure_runtime_models(calib_images=None, checked=False):
    """ensure_models() plus what the runtime rows need: det_legacy, and int8 copies (NNCF, calibrated on
    `calib_images`: paths, rec gallery images; the detector gets bench scenes): plain ones rec_int8 / det_int8
    (NNCF's post-training quantization alone, no agreement check acted on), and with `checked` also
    tools/quantize.py's checked copies beside the fp32 models (<dir>_int8: accuracy control, the report
    Global.precision auto reads) rec_checked / det_checked."""
    m = ensure_models()
    m["det_legacy"] = export("det", "legacy")
    if calib_images is not None:
        m["rec_int8"] = quantized("rec", m["rec_legacy"], calib_images["rec"])
        m["det_int8"] = quantized("det", m["det_pir"], calib_images["det"])
    if calib_images is not None and checked:
        m["rec_checked"] = quantized("rec", m["rec_legacy"], calib_images["rec"], checked=True)
        m["det_checked"] = quantized("det", m["det_pir"], calib_images["det"], checked=True)
    return m


def quantized(kind, src, images, subset=64, checked=False):
    """An int8 copy of `src` in the cache, rebuilt when `src` or the quantizer changes: plain
    (bench/.cache/models/<kind>_int8, no accuracy control) or `checked` (<src>_int8, where Global.precision
    auto looks: tools/quantize.py's defaults, its check at Global.threshold of inference_general.yaml)."""
    from ppshitu.infer.precision import int8_beside, read_report
    from ppshitu.infer.quantize import QUANTIZER_VERSION, quantize_model
    from ppshitu.infer.spec import read_spec

    out = Path(int8_beside(src)) if checked else MODELS / f"{kind}_int8"
    source_fp = read_spec(str(src))["fingerprint"]
    spec = read_spec(str(out)) if (out / "inference.yml").is_file() else None
    report = read_report(str(out)) if spec is not None else None
    mode_ok = report is not None and (checked or report.get("accuracy_control") is None)
    if (spec is None or not mode_ok or spec.get("quantized_from") != source_fp
            or spec["calibration"].get("quantizer_version") != QUANTIZER_VERSION):
        t = time.perf_counter()
        quantize_model(str(src), list(images)[:subset], str(out), model_type=kind, subset_size=subset,
                       overwrite=True, threshold=0.3,
                       accuracy_control="sensitivity" if checked else False)
        print(f"quantized {kind} ({'checked' if checked else 'plain'}) in {time.perf_counter() - t:.0f} s",
              flush=True)
    return out


if __name__ == "__main__":
    _export_main(*sys.argv[1:4])
