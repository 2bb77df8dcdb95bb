"""Bring your own embedding model: ONNX encoders -> a ppshitu inference directory (tools/import_model.py).

THE CONTRACT an ONNX model meets to be imported (what a user's CLIP export and the model this project trains,
configs/clip/, are both written to):

* Image encoder: ONE float32 input [N, 3, H, W]: RGB, resized (shorter side to --resize-short, then a centre
  crop of --crop; or straight to --input-size), scaled by --scale (1/255) and normalised by --mean / --std,
  exactly as inference.yml records; ONE output [N, D], the embedding (normalised or not: say which with
  --outputs-normalized; ppshitu L2-normalises every vector anyway). Name the output with --image-output
  when the file has several.
* Text encoder (optional; a text-image model): input `input_ids` int64 (or int32) [N, L], L the context
  length, optionally a second input `attention_mask` of the same shape and type (1 on tokens, 0 on padding);
  ONE output [N, D] with the image encoder's D. A query is fed as [start] + tokens + [end], padded to L
  with the pad id (text_tokenizer.py).
* Tokenizer: a Hugging Face `tokenizers` tokenizer.json (--tokenizer-kind bpe: CLIP's byte-level BPE,
  OpenCLIP/HF) or a BERT WordPiece vocab.txt (--tokenizer-kind wordpiece: Chinese-CLIP), read with the
  `tokenizers` library; its vocabulary size must fit the text encoder's token-embedding table (read from
  the ONNX initializer the ids index: equal, or up to onnx_model.MAX_VOCAB_PADDING rows more). Start/end/pad
  tokens are looked up by their usual names (<|startoftext|> <|endoftext|>; [CLS] [SEP] [PAD]) or named
  with --sot-token / --eot-token / --pad-token; no pad token pads with id 0.

The directory written (--out, new or empty; --overwrite replaces a ppshitu model directory):
  inference.onnx        the image encoder (model_files finds it; only the OpenVINO runtime runs it)
  text_encoder.onnx     the text encoder, when given
  tokenizer.json | vocab.txt
  inference.yml         model_type rec, format onnx, input_size, resize_short, crop_size, interpolation,
                        scale, mean, std, input_name, output_name, embedding_size, outputs_normalized,
                        fingerprint (the image encoder's file), and `text`: onnx_model, input_name,
                        input_dtype, mask_name, output_name, embedding_size, outputs_normalized, fingerprint,
                        tokenizer {kind, file, context_length, sot_id, eot_id, pad_id, vocab_size,
                        lowercase}; imported_from: the source files
Both encoders are run once on OpenVINO before anything is written (a file OpenVINO cannot run, or one whose
output is not [1, D] with the D stated, is refused). Nothing is ever downloaded.
"""
import os
import shutil

import numpy as np

from ..errors import ConfigError
from .onnx_model import (ImportModelError, check_vocab_fits, embedding_rows, image_encoder_io, inspect_onnx,
                         text_encoder_io)
from .spec import SPEC_FILE, check_model_out_dir, fingerprint, write_spec
from .text_tokenizer import KINDS, load_tokenizer, special_ids

IMAGE_FILE, TEXT_FILE = "inference.onnx", "text_encoder.onnx"
TOKENIZER_FILES = {"bpe": "tokenizer.json", "wordpiece": "vocab.txt"}


def tokenizer_kind(path, kind=None):
    """--tokenizer-kind, or the file's: *.json -> bpe, *.txt -> wordpiece."""
    if kind:
        return kind
    ext = os.path.splitext(str(path))[1].lower()
    if ext in (".json", ".txt"):
        return "bpe" if ext == ".json" else "wordpiece"
    raise ConfigError(f"--tokenizer {path}: say its kind with --tokenizer-kind {'|'.join(KINDS)} (a tokenizer.json "
                      f"is bpe, a vocab.txt wordpiece)")


def probe(path, feeds, output):
    """Run the ONNX file `path` once on OpenVINO (CPU) with `feeds`; its `output` as float32."""
    from .openvino import _ov

    ov = _ov()
    try:
        # f32 whatever the CPU: OpenVINO's default on a CPU with native bf16 is bf16, which a oneDNN capped by
        # ONEDNN_MAX_CPU_ISA cannot build ("could not create a primitive descriptor"), and the probe is a reference
        compiled = ov.Core().compile_model(ov.Core().read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        result = compiled.create_infer_request().infer(feeds)
    except Exception as e:  # noqa: BLE001 - OpenVINO's own errors: the file does not run
        raise ImportModelError(f"{path}: OpenVINO cannot run it ({type(e).__name__}: {str(e)[:300]})") from None
    for port, value in result.items():
        if output in port.get_names():
            return np.asarray(value, np.float32)
    raise ImportModelError(f"{path}: OpenVINO's outputs have no {output!r}")


def _checked_dim(path, out, stated):
    if out.ndim != 2 or out.shape[0] != 1 or (stated is not None and out.shape[1] != stated):
        raise ImportModelError(f"{path}: one input gave an output of shape {list(out.shape)}; an encoder must give "
                               f"[1, D]{f' with D = {stated} (as the file states)' if stated else ''}")
    if not np.isfinite(out).all():
        raise ImportModelError(f"{path}: its output is not finite on a plain input (NaN or inf)")
    return int(out.shape[1])


def image_section(a):
    """The image encoder's inference.yml keys (preprocessing, names, D) from the arguments `a`."""
    crop = [int(v) for v in a.crop] if a.crop else None
    size = [int(v) for v in (a.input_size or crop)]
    if crop and crop != size:
        raise ConfigError(f"--input-size {size} must equal --crop {crop} (the crop is what the model sees)")
    info = inspect_onnx(a.image_encoder)
    io = image_encoder_io(info, size, a.image_output)
    out = probe(a.image_encoder, {io["input_name"]: np.zeros([1, 3] + size, np.float32)}, io["output_name"])
    dim = _checked_dim(a.image_encoder, out, io["embedding_size"])
    return {"model_type": "rec", "format": "onnx", "input_size": size, "interpolation": a.interpolation,
            "scale": float(a.scale), "mean": [float(v) for v in a.mean], "std": [float(v) for v in a.std],
            "resize_short": int(a.resize_short) if a.resize_short else None, "crop_size": crop,
            "input_name": io["input_name"], "output_name": io["output_name"], "embedding_size": dim,
            "outputs_normalized": bool(a.outputs_normalized), "fingerprint": fingerprint(a.image_encoder)}


def text_section(a, image_dim):
    """The text encoder's `text` section (tokenizer included), checked against the image encoder's D."""
    if not a.tokenizer:
        raise ConfigError("--text-encoder needs --tokenizer (its tokenizer.json or vocab.txt)")
    kind = tokenizer_kind(a.tokenizer, a.tokenizer_kind)
    tok = load_tokenizer(kind, a.tokenizer, not a.no_lowercase)
    ids = special_ids(tok, kind, a.tokenizer, {"sot": a.sot_token, "eot": a.eot_token, "pad": a.pad_token})
    info = inspect_onnx(a.text_encoder)
    io = text_encoder_io(info, a.context_length, a.text_output)
    vocab = int(tok.get_vocab_size(with_added_tokens=True))
    rows, table = embedding_rows(info, io["input_name"])
    check_vocab_fits(rows, table, vocab, a.tokenizer, a.text_encoder)
    length, dtype = io["context_length"], np.int32 if io["input_dtype"] == "int32" else np.int64
    used = [ids["sot"]] + tok.encode("a", add_special_tokens=False).ids[:1] + [ids["eot"]]
    seq = np.full((1, length), ids["pad"], dtype)
    seq[0, :len(used)] = used
    feeds = {io["input_name"]: seq}
    if io["mask_name"]:
        feeds[io["mask_name"]] = (np.arange(length)[None, :] < len(used)).astype(dtype)
    dim = _checked_dim(a.text_encoder, probe(a.text_encoder, feeds, io["output_name"]), io["embedding_size"])
    if dim != image_dim:
        raise ImportModelError(f"{a.text_encoder}: the text encoder makes {dim}-d vectors but the image encoder "
                               f"{a.image_encoder} makes {image_dim}-d ones; they are not two towers of one model")
    return {"onnx_model": TEXT_FILE, "input_name": io["input_name"], "input_dtype": io["input_dtype"],
            "mask_name": io["mask_name"], "output_name": io["output_name"], "embedding_size": dim,
            "outputs_normalized": bool(a.outputs_normalized), "fingerprint": fingerprint(a.text_encoder),
            "tokenizer": {"kind": kind, "file": TOKENIZER_FILES[kind], "context_length": int(length),
                          "sot_id": ids["sot"], "eot_id": ids["eot"], "pad_id": ids["pad"], "vocab_size": vocab,
                          "lowercase": not a.no_lowercase},
            "embedding_rows": rows}


def _inputs(a):
    return [p for p in (a.image_encoder, a.text_encoder, a.tokenizer) if p]


def check_out(a):
    """--out may not hold an input (it would be replaced) and must be new, empty or a ppshitu model (--overwrite)."""
    out = os.path.realpath(a.out)
    for path in _inputs(a):
        if os.path.realpath(path).startswith(out + os.sep) or os.path.realpath(path) == out:
            raise ConfigError(f"--out {a.out} holds the input {path}; import into another directory")
    check_model_out_dir(a.out, a.overwrite)


def import_model(a):
    """Check everything, then write the directory at once (a temporary sibling renamed into place); the spec."""
    check_out(a)
    if (a.tokenizer or a.tokenizer_kind) and not a.text_encoder:
        raise ConfigError("--tokenizer belongs to a text encoder: give --text-encoder too (or leave both out "
                          "for an image-only model)")
    spec = image_section(a)
    if a.text_encoder:
        spec["text"] = text_section(a, spec["embedding_size"])
    spec["imported_from"] = {k: os.path.abspath(v) for k, v in (("image_encoder", a.image_encoder),
                                                               ("text_encoder", a.text_encoder),
                                                               ("tokenizer", a.tokenizer)) if v}
    parent = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(parent, exist_ok=True)
    from .openvino.convert import make_temp_dir

    tmp = make_temp_dir(parent)
    try:
        shutil.copyfile(a.image_encoder, os.path.join(tmp, IMAGE_FILE))
        if a.text_encoder:
            shutil.copyfile(a.text_encoder, os.path.join(tmp, TEXT_FILE))
            shutil.copyfile(a.tokenizer, os.path.join(tmp, spec["text"]["tokenizer"]["file"]))
        write_spec(tmp, **spec)
        _replace_dir(tmp, a.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return spec


def _replace_dir(tmp, out):
    """`tmp` becomes `out`; an old model directory there (check_out allowed it) is removed after."""
    old = None
    if os.path.lexists(out):
        old = out.rstrip(os.sep) + f".old-{os.getpid()}"
        os.rename(out, old)
    os.rename(tmp, out)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def summary(spec, out):
    """The lines import_model prints."""
    lines = [f"imported into {out}: image encoder {spec['input_size'][0]}x{spec['input_size'][1]} -> "
             f"{spec['embedding_size']}-d ({spec['input_name']} -> {spec['output_name']})"]
    t = spec.get("text")
    if t:
        k = t["tokenizer"]
        rows = f", its table {t['embedding_rows']} rows" if t.get("embedding_rows") else " (table size not in the graph)"
        lines.append(f"text encoder -> {t['embedding_size']}-d; {k['kind']} tokenizer, {k['vocab_size']} tokens{rows}, "
                     f"context length {k['context_length']}, start/end/pad ids {k['sot_id']}/{k['eot_id']}/{k['pad_id']}")
    lines.append(f"{os.path.join(out, SPEC_FILE)} records it; point Global.rec_inference_model_dir at {out} "
                 f"(it runs on OpenVINO)")
    return lines
