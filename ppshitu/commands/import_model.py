"""Import ONNX encoders (an image encoder; a text encoder and its tokenizer for text-image search) as a ppshitu
inference directory, checked and run once on OpenVINO:

    python tools/import_model.py --image-encoder clip_image.onnx --text-encoder clip_text.onnx \
        --tokenizer tokenizer.json --context-length 77 --resize-short 224 --crop 224 \
        --mean 0.48145466 0.4578275 0.40821073 --std 0.26862954 0.26130258 0.27577711 --out models/clip

What the files must be (the contract, also followed by the project's own text-image model under
configs/clip/) and what inference.yml records: ppshitu/infer/model_import.py.
"""
import argparse
import math

from ppshitu.cli import run_main
from ppshitu.utils.argtypes import finite_float, int_range, ranged

INTERPOLATIONS = ("bicubic", "bilinear", "area", "nearest", "lanczos")


def _size(text):
    """224 or 224x192 (H x W) -> [H, W]."""
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is N or HxW in pixels, got {text!r}") from None
    if len(values) not in (1, 2) or not all(8 <= v <= 4096 for v in values):
        raise argparse.ArgumentTypeError(f"a size is N or HxW, each 8 to 4096 px, got {text!r}")
    return values * 2 if len(values) == 1 else values


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-encoder", required=True, help="the image encoder, ONNX: float32 [N,3,H,W] -> [N,D]")
    p.add_argument("--text-encoder", help="the text encoder, ONNX: input_ids int64 [N,L] (+ attention_mask) -> [N,D]")
    p.add_argument("--tokenizer", help="the text encoder's tokenizer: tokenizer.json (bpe) or vocab.txt (wordpiece)")
    p.add_argument("--tokenizer-kind", choices=("bpe", "wordpiece"), help="default: from the file (.json bpe, .txt "
                   "wordpiece)")
    p.add_argument("--context-length", type=int_range(3, 4096, "tokens"),
                   help="tokens per query, start/end included (CLIP 77, Chinese-CLIP 52; default: the file's L)")
    p.add_argument("--sot-token", help="the start token (default <|startoftext|> for bpe, [CLS] for wordpiece)")
    p.add_argument("--eot-token", help="the end token (default <|endoftext|> for bpe, [SEP] for wordpiece)")
    p.add_argument("--pad-token", help="the padding token (default [PAD] / <pad> if present, else id 0)")
    p.add_argument("--no-lowercase", action="store_true", help="wordpiece: keep case (a cased BERT vocabulary)")
    p.add_argument("--input-size", type=_size, help="what the image encoder sees, N or HxW (default: --crop)")
    p.add_argument("--resize-short", type=int_range(8, 4096, "px"), help="resize the shorter side to this first")
    p.add_argument("--crop", type=_size, help="then centre-crop to this (N or HxW)")
    p.add_argument("--interpolation", choices=INTERPOLATIONS, default="bicubic", help="resize filter (default "
                   "bicubic, as CLIP and DINOv2 are trained)")
    p.add_argument("--scale", type=finite_float(0, 1, low_open=True), default=1 / 255.0,
                   help="pixel scale before mean/std (default 1/255)")
    p.add_argument("--mean", type=float, nargs=3, required=True, metavar=("R", "G", "B"), help="per channel, after scale")
    p.add_argument("--std", type=float, nargs=3, required=True, metavar=("R", "G", "B"), help="per channel, > 0")
    p.add_argument("--image-output", help="the image encoder's embedding output, when it has several")
    p.add_argument("--text-output", help="the text encoder's embedding output, when it has several")
    p.add_argument("--outputs-normalized", action="store_true",
                   help="the encoders' outputs are L2-normalised already (recorded; ppshitu normalises anyway)")
    p.add_argument("--out", required=True, help="the model directory to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a ppshitu model directory at --out")
    return ranged(p)


def main(argv=None):
    args = parser().parse_args(argv)
    from ppshitu.errors import ConfigError

    if not args.input_size and not args.crop:
        raise ConfigError("give --input-size (what the image encoder sees) or --crop")
    if not all(math.isfinite(v) for v in args.mean) or not all(math.isfinite(v) and v > 0 for v in args.std):
        raise ConfigError(f"--mean must be finite and --std finite and > 0; got --mean {args.mean} --std {args.std}")
    from ppshitu.infer.model_import import import_model, summary

    spec = import_model(args)
    for line in summary(spec, args.out):
        print(line)
    return spec


def cli(argv=None):
    """`ppshitu import_model ARGS`, as `python tools/import_model.py ARGS` runs: an expected error is one line, exit
    status 2."""
    run_main(lambda: main(argv))
