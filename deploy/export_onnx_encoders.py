#!/usr/bin/env python
"""Export a published embedding model to the ONNX files tools/import_model.py imports (run where PyTorch is
installed: ppshitu itself needs no torch, and nothing in ppshitu downloads weights at run time).

    python deploy/export_onnx_encoders.py open_clip --model ViT-B-32 --pretrained laion2b_s34b_b79k --out clip_onnx
        -> clip_onnx/image_encoder.onnx, text_encoder.onnx, tokenizer.json (CLIP's byte-level BPE)
    python deploy/export_onnx_encoders.py dinov2 --model dinov2_vits14 --out dinov2_onnx
        -> dinov2_onnx/image_encoder.onnx (the CLS embedding, 384-d for ViT-S/14)

What each needs: `pip install torch open_clip_torch huggingface_hub` (open_clip) or `pip install torch`
(dinov2, from torch.hub: facebookresearch/dinov2); the weights come through those libraries' own caches
(or --pretrained / --weights a local file), the tokenizer.json from the Hugging Face repository of the same
tokenizer (--tokenizer-repo), or your copy (--tokenizer-json). The files follow the contract in
ppshitu/infer/model_import.py: image float32 [N, 3, H, W] -> [N, D]; text input_ids int64 [N, 77] -> [N, D].
This script is not run by the tests (no torch here); the import and search paths it feeds are.
"""
import argparse
import os
import shutil


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="family", required=True)
    oc = sub.add_parser("open_clip", help="an OpenCLIP (or OpenAI CLIP) model: both towers and the tokenizer")
    oc.add_argument("--model", default="ViT-B-32", help="open_clip architecture (default ViT-B-32)")
    oc.add_argument("--pretrained", default="laion2b_s34b_b79k", help="open_clip pretrained tag, or a local "
                    "checkpoint file")
    oc.add_argument("--tokenizer-json", help="a local tokenizer.json (default: from --tokenizer-repo)")
    oc.add_argument("--tokenizer-repo", default="openai/clip-vit-base-patch32",
                    help="the Hugging Face repository whose tokenizer.json is this model's tokenizer (OpenAI's "
                         "CLIP BPE for every OpenCLIP ViT-B-32)")
    dino = sub.add_parser("dinov2", help="a DINOv2 backbone from torch.hub: image encoder only")
    dino.add_argument("--model", default="dinov2_vits14", help="torch.hub entry (default dinov2_vits14: ViT-S/14)")
    dino.add_argument("--weights", help="a local state_dict for that model (default: torch.hub's download)")
    for s in (oc, dino):
        s.add_argument("--size", type=int, default=224, help="the input side (default 224)")
        s.add_argument("--out", required=True, help="the folder to write (new)")
        s.add_argument("--opset", type=int, default=17)
    return p


def _export(module, example, path, input_name, opset):
    import torch

    torch.onnx.export(module, (example,), path, input_names=[input_name], output_names=["embedding"],
                      dynamic_axes={input_name: {0: "N"}, "embedding": {0: "N"}}, opset_version=opset,
                      do_constant_folding=True)
    print(f"wrote {path}")


def export_open_clip(a):
    import open_clip
    import torch

    model, _, _ = open_clip.create_model_and_transforms(a.model, pretrained=a.pretrained)
    model.eval()

    class Image(torch.nn.Module):
        def forward(self, pixels):
            return model.encode_image(pixels)

    class Text(torch.nn.Module):
        def forward(self, input_ids):
            return model.encode_text(input_ids)

    length = int(getattr(model, "context_length", 77))
    with torch.no_grad():
        _export(Image(), torch.zeros(1, 3, a.size, a.size), os.path.join(a.out, "image_encoder.onnx"), "pixels",
                a.opset)
        _export(Text(), torch.zeros(1, length, dtype=torch.int64), os.path.join(a.out, "text_encoder.onnx"),
                "input_ids", a.opset)
    target = os.path.join(a.out, "tokenizer.json")
    if a.tokenizer_json:
        shutil.copyfile(a.tokenizer_json, target)
    else:
        from huggingface_hub import hf_hub_download

        shutil.copyfile(hf_hub_download(a.tokenizer_repo, "tokenizer.json"), target)
    print(f"wrote {target} (context length {length})")


def export_dinov2(a):
    import torch

    model = torch.hub.load("facebookresearch/dinov2", a.model, pretrained=a.weights is None)
    if a.weights:
        model.load_state_dict(torch.load(a.weights, map_location="cpu"))
    model.eval()
    with torch.no_grad():
        _export(model, torch.zeros(1, 3, a.size, a.size), os.path.join(a.out, "image_encoder.onnx"), "pixels", a.opset)


def main(argv=None):
    a = parser().parse_args(argv)
    if os.path.exists(a.out) and os.listdir(a.out):
        raise SystemExit(f"--out {a.out} is not empty; choose a new folder")
    os.makedirs(a.out, exist_ok=True)
    (export_open_clip if a.family == "open_clip" else export_dinov2)(a)


if __name__ == "__main__":
    main()
