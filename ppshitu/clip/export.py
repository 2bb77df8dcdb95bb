"""Export a trained ClipModel as the ONNX files a user's CLIP export would be (the contract in
ppshitu/infer/model_import.py), so it goes through the same `tools/import_model.py`:

  image_encoder.onnx   float32 x [N, 3, H, W] (RGB, resized, scale 1/255, mean/std) -> image_embeds [N, D]
  text_encoder.onnx    int64 input_ids [N, L] ([sot] + tokens + [eot], padded with 0) -> text_embeds [N, D]
                       (both outputs L2-normalized)
  tokenizer.json       the byte-level BPE the model was trained with
  clip_model.yml       the preprocessing and text facts, and the import command's arguments

Each tower is traced to a Paddle 3 PIR program (paddle.jit.save) and converted by paddle2onnx in a child
process (as ppshitu/infer/openvino/convert.py does); then both ONNX files are run on OpenVINO beside the Paddle
model on the same inputs, and an export whose outputs differ (cosine below 0.999) is refused.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import yaml

from ..errors import PPShiTuError
from ..paddle_import import spend_pir_out_warning

ONNX_OPSET = 17
MIN_COSINE = 0.999
FACTS_FILE = "clip_model.yml"


class ExportMismatchError(PPShiTuError):
    """The ONNX file does not compute what the Paddle model does."""


def _pir_to_onnx(towers):
    """[(layer, input_spec, onnx path)]: trace each layer, save its PIR program, and convert them all with
    paddle2onnx in one child process (importing paddle there costs seconds)."""
    import paddle

    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for i, (layer, input_spec, onnx_path) in enumerate(towers):
            spend_pir_out_warning()
            static = paddle.jit.to_static(layer, input_spec=input_spec, full_graph=True)
            prefix = os.path.join(tmp, f"tower{i}", "inference")
            paddle.jit.save(static, prefix)
            jobs += [prefix + ".json", prefix + ".pdiparams", onnx_path]
        env = dict(os.environ, FLAGS_enable_pir_api="1")
        env.setdefault("OMP_NUM_THREADS", "1")
        code = ("import sys, paddle2onnx\n"
                "for i in range(2, len(sys.argv), 3):\n"
                "    paddle2onnx.export(*sys.argv[i:i + 3], opset_version=int(sys.argv[1]), auto_upgrade_opset=False,"
                " enable_onnx_checker=True, enable_optimize=True)")
        proc = subprocess.run([sys.executable, "-c", code, str(ONNX_OPSET), *jobs], env=env, capture_output=True,
                              text=True)
        missing = [path for _, _, path in towers if not os.path.isfile(path)]
        if proc.returncode != 0 or missing:
            raise PPShiTuError(f"{', '.join(missing) or towers[0][2]}: paddle2onnx failed:\n"
                               f"{(proc.stderr or proc.stdout)[-3000:]}")


def name_output(onnx_path, name):
    """Give the graph's single output `name`, written by the node that computes it: paddle2onnx ends the graph
    with Identity(Div.N) -> fetch_name_0, and OpenVINO, folding the Identity, may report the tensor as Div.N."""
    import onnx

    model = onnx.load(onnx_path)
    graph = model.graph
    (out,) = graph.output
    node = next(n for n in graph.node if out.name in n.output)
    if node.op_type == "Identity":
        source = node.input[0]
        graph.node.remove(node)
        for n in graph.node:
            n.output[:] = [name if o == source else o for o in n.output]
            n.input[:] = [name if i == source else i for i in n.input]
    else:
        node.output[:] = [name if o == out.name else o for o in node.output]
    out.name = name
    onnx.checker.check_model(model)
    onnx.save(model, onnx_path)
    return onnx_path


def onnx_outputs(onnx_path, array):
    """The ONNX model's single output for `array`, run on OpenVINO CPU."""
    import openvino as ov

    compiled = ov.Core().compile_model(onnx_path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.asarray(compiled([array])[compiled.output(0)])


def min_cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return float(cos.min())


def _check_same(onnx_path, layer, array):
    """Refuse an ONNX file whose output is not the Paddle layer's on `array` (cosine >= MIN_COSINE)."""
    import paddle

    with paddle.no_grad():
        want = layer(paddle.to_tensor(array)).numpy()
    got = onnx_outputs(onnx_path, array)
    cos = min_cosine(want, got) if got.shape == want.shape else -1.0
    if cos < MIN_COSINE:
        raise ExportMismatchError(f"{onnx_path}: output {got.shape} differs from the Paddle model's {want.shape} "
                                  f"(lowest cosine {cos:.6f} < {MIN_COSINE})")
    return cos


def _facts(model, preprocess, image_shape, tok):
    _, h, w = image_shape
    pre = {"input_size": [h, w], "interpolation": preprocess.interpolation, "scale": preprocess.scale,
           "mean": [float(v) for v in preprocess.mean], "std": [float(v) for v in preprocess.std]}
    return {"embedding_size": int(model.embedding_size), "outputs_normalized": True, "image": pre,
            "text": {"tokenizer": "tokenizer.json", "kind": "bpe", "context_length": tok.context_length,
                     "sot_id": tok.sot_id, "eot_id": tok.eot_id, "pad_id": tok.pad_id, "vocab_size": tok.vocab_size},
            "backbone": model.image.backbone_name}


def import_args(out_dir, facts):
    """The tools/import_model.py arguments that import this export (README, bench and tests use them)."""
    pre = facts["image"]
    h, w = pre["input_size"]
    if h != w:
        raise PPShiTuError(f"image input {h}x{w}: tools/import_model.py takes a square --input-size")
    return ["--image-encoder", os.path.join(out_dir, "image_encoder.onnx"),
            "--text-encoder", os.path.join(out_dir, "text_encoder.onnx"),
            "--tokenizer", os.path.join(out_dir, "tokenizer.json"), "--tokenizer-kind", "bpe",
            "--input-size", str(h), "--interpolation", pre["interpolation"], "--scale", repr(pre["scale"]),
            "--mean", *map(repr, pre["mean"]), "--std", *map(repr, pre["std"]), "--outputs-normalized"]


def export_clip(model, out_dir, preprocess, image_shape, tokenizer_path, tok, seed=0):
    """Write the export (module docstring) into `out_dir`; returns the facts (with the measured cosines)."""
    import paddle

    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    _, h, w = image_shape
    images = rng.standard_normal((3, 3, h, w)).astype(np.float32)
    texts = ["a photo of a red striped star", "blue ring", "the heptagon is teal with a shaded pattern"]
    ids = tok.encode(texts).ids
    image_path, text_path = os.path.join(out_dir, "image_encoder.onnx"), os.path.join(out_dir, "text_encoder.onnx")
    _pir_to_onnx([(model.image, [paddle.static.InputSpec([None, 3, h, w], "float32", "x")], image_path),
                  (model.text, [paddle.static.InputSpec([None, tok.context_length], "int64", "input_ids")], text_path)])
    name_output(image_path, "image_embeds")
    name_output(text_path, "text_embeds")
    facts = _facts(model, preprocess, image_shape, tok)
    facts["onnx_vs_paddle_min_cosine"] = {"image": _check_same(image_path, model.image, images),
                                          "text": _check_same(text_path, model.text, ids)}
    shutil.copyfile(tokenizer_path, os.path.join(out_dir, "tokenizer.json"))
    facts["import_args"] = import_args(out_dir, facts)
    with open(os.path.join(out_dir, FACTS_FILE), "w", encoding="utf-8") as f:
        yaml.safe_dump(facts, f, sort_keys=False)
    return facts
