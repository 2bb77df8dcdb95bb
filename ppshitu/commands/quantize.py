"""Quantize a recognition or detection model to int8 (NNCF post-training quantization) for OpenVINO.

    python tools/quantize.py -c configs/inference/inference_general.yaml --model rec \
        --calib data/demo/rec/train_list.txt --out models/demo/rec_int8
    python tools/quantize.py -c configs/inference/inference_general.yaml --model det \
        --calib data/scenes/images --out models/demo/det_int8

The model is the config's Global.rec_inference_model_dir (--model rec, the default) or
Global.det_inference_model_dir (--model det). --calib is an image folder (searched recursively), a list
file (gallery lists `path<TAB>label`, PaddleClas lists `path label`; paths relative to the list's folder,
or to --image-root) or one image. The images go through the model's own preprocessing (inference.yml;
for PP-ShiTu's published models, RecPreProcess / DetPreProcess). Use images like the ones the model will
see, not the ones you evaluate on (for the detector: scenes like the user's; for the recognition model: gallery
images and crops of scenes).

The int8 model is checked against fp32 on the calibration images by what the user sees (the detector's boxes
clear of Global.threshold kept at IoU >= 0.8; each image's gallery neighbour among the others kept, cosine >=
0.98: ppshitu/infer/quantize_check.py); below --target, the layers where int8 adds most error are kept in f32,
1, 2, 4, ... of them, until it is reached (ppshitu/infer/quantize_control.py; --accuracy-control nncf: NNCF's).
The agreement, the layers kept in f32 and whether it passed are printed and written to
--out/quantize_report.json. --out defaults to the model dir + "_int8", where Global.precision auto (the openvino
default) finds it and runs it if it passed; -o Global.precision=int8 with the model dir pointed at --out runs it
in any case.
"""
import logging
import os

from ppshitu.cli import config_parser, load_cli_config, run_main
from ppshitu.errors import ConfigError
from ppshitu.schemas import INFER_SCHEMA


def calibration_paths(calib, image_root=None):
    from ppshitu.utils.image import list_images

    paths = list_images(calib)
    if image_root and os.path.isfile(calib):
        base = os.path.dirname(os.path.abspath(calib))
        paths = [os.path.join(image_root, os.path.relpath(p, base)) for p in paths]
    return paths


def main(argv=None):
    parser = config_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("rec", "det"), default="rec", help="which model of the config")
    parser.add_argument("--calib", required=True, help="calibration images: a folder, a list file or an image")
    parser.add_argument("--out", default=None, help="the quantized model directory to write (default: the model "
                        "dir + '_int8', where Global.precision auto looks)")
    parser.add_argument("--target", type=float, default=None, help="agreement with fp32 on the calibration "
                        "images to reach (default 0.99)")
    parser.add_argument("--accuracy-control", choices=("sensitivity", "nncf", "none"), default="sensitivity",
                        help="below --target: put back in f32 the layers where int8 adds most error, 1, 2, 4, ... "
                        "of them (sensitivity, the default), or NNCF's quantize_with_accuracy_control (nncf: one "
                        "compilation per quantizer, far slower), or none (check and report only)")
    parser.add_argument("--image-root", default=None, help="root of a list file's relative paths "
                        "(default: the list file's folder)")
    parser.add_argument("--subset-size", type=int, default=300, help="calibration images used (default 300)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    g = cfg["Global"]
    if args.model == "rec":
        model_dir = g.get("rec_inference_model_dir") or g.get("inference_model_dir")
        ops = (cfg.get("RecPreProcess") or {}).get("transform_ops")
        key = "Global.rec_inference_model_dir"
    else:
        model_dir = g.get("det_inference_model_dir")
        ops = (cfg.get("DetPreProcess") or {}).get("transform_ops")
        key = "Global.det_inference_model_dir"
    if not model_dir:
        raise ConfigError(f"{key} is required: the model to quantize")
    if args.subset_size < 1:
        raise ConfigError(f"--subset-size must be >= 1, got {args.subset_size}")
    from ppshitu.infer.precision import int8_beside
    from ppshitu.infer.quantize import DEFAULT_TARGET, quantize_model

    out = args.out or int8_beside(model_dir)
    target = DEFAULT_TARGET if args.target is None else args.target
    spec = quantize_model(model_dir, calibration_paths(args.calib, args.image_root), out,
                          model_type=args.model, transform_ops=ops, subset_size=args.subset_size,
                          calib_source=args.calib, overwrite=args.overwrite, target=target,
                          threshold=g.get("threshold", 0.2),
                          accuracy_control=False if args.accuracy_control == "none" else args.accuracy_control)
    cal = spec["calibration"]
    layers = cal["float_layers"]
    print(f"agreement with fp32 on the calibration images: {cal['agreement']:.4f} (target {target:.4f}): "
          f"{'passed' if cal['passed'] else 'FAILED'}; {len(layers)} layer(s) kept in f32: "
          f"{', '.join(layers) or 'none'}")
    print(f"wrote {out} ({spec['model_type']}, int8, {cal['images']} calibration images, "
          f"fingerprint {spec['fingerprint']}, report {out}/quantize_report.json); "
          + ("Global.precision auto runs it where bf16 is not native" if cal["passed"] and out == int8_beside(model_dir)
             else f"run it with -o Global.inference_backend=openvino -o Global.precision=int8 -o {key}={out}"))
    return spec


def cli(argv=None):
    """`ppshitu quantize ARGS`, as `python tools/quantize.py ARGS` runs: an expected error is one line,
    exit status 2."""
    run_main(lambda: main(argv))
