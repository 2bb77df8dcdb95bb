"""The small text-image model, measured: zero-shot text-to-image recall on attribute combinations never seen in
training, against chance and against the same model before training; then the export, imported as a user
would import a CLIP model, answering the same queries from ONNX on OpenVINO.

    .venv/bin/python bench/bench_clip.py [--quick] [--epochs N] [--seed S]

Steps (each timed):
  1. data      dataset/captions.py: the synthetic objects' (colour, pattern, shape) combinations, 12 % held out
               (every colour, pattern and shape alone is in training; those triples are not); 4 training images
               per training combination, 2 per held-out one; tokenizer learnt from the training captions
  2. train     configs/clip/clip_effnet_lite0_demo.yaml through the task tools/train.py runs; epoch 0 is the
               model before training: ImageNet image backbone + untrained projection and random text tower
  3. export    paddle2onnx: image_encoder.onnx, text_encoder.onnx (ONNX vs Paddle cosine checked)
  4. import    tools/import_model.py with the export's own arguments, then every held-out caption embedded by the
               imported text encoder and every held-out image by the imported image encoder (OpenVINO, through
               the Embedder a gallery uses), scored the same way; and one tools/search.py --text on an indexed
               folder of the held-out images
Queries: one caption per held-out combination ("a photo of a <colour> <pattern> <shape>"), against all held-out
images; a hit when an image of that combination ranks within k. The reported trained figures are the final
epoch's (best_model is picked on the same held-out set, so it is not reported). One seed unless --seed says.
Writes bench/results/bench_clip.md and .json.
"""
import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataset.captions import make_caption_set  # noqa: E402

RECIPE = ROOT / "configs" / "clip" / "clip_effnet_lite0_demo.yaml"
RESULTS = ROOT / "bench" / "results"


def build_data(work, quick, seed):
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    kw = dict(max_train_combos=120, max_heldout_combos=40) if quick else {}
    make_caption_set(data, seed=seed, **kw)
    return data


def recipe(work, data, epochs, seed):
    from ppshitu.config import load_config
    from ppshitu.schemas import TRAIN_SCHEMA

    return load_config(RECIPE, [f"Global.output_dir={work / 'out'}", f"Global.epochs={epochs}",
                                f"Global.eval_interval={epochs}", f"Global.seed={seed}",
                                f"Arch.TextTower.tokenizer={data / 'tokenizer.json'}",
                                f"DataLoader.Train.dataset.list_path={data / 'train.jsonl'}",
                                f"DataLoader.Eval.dataset.list_path={data / 'heldout.jsonl'}"], TRAIN_SCHEMA)


def deployed_recall(model_dir, eval_section):
    """Recall of the imported model (OpenVINO): captions through its text encoder, images through the Embedder."""
    from ppshitu.clip.data import CaptionList
    from ppshitu.clip.metrics import text_to_image_recall
    from ppshitu.embedder import Embedder
    from ppshitu.infer.rec import RecPredictor
    from ppshitu.infer.text import TextPredictor

    listed = CaptionList(eval_section, "DataLoader.Eval")
    captions, combos = listed.eval_captions()
    text = TextPredictor(str(model_dir)).embed(captions).vectors
    emb = Embedder(RecPredictor(str(model_dir), backend="openvino", cpu_threads=2)).embed_files(listed.paths)
    assert len(emb.vectors) == len(listed.paths), "an image was refused"
    out = text_to_image_recall(text, combos, emb.vectors, listed.combos)
    out["misses"] = misses(text, combos, emb.vectors, listed.combos, Path(listed.list_path).parent / "combos.json")
    return out


def misses(text, combos, images, image_combos, combos_json):
    """{"colour+pattern": n, ...}: for each query whose first image is of another combination, the attributes
    that image gets wrong."""
    attrs = {c["combo"]: c["attributes"] for c in json.loads(Path(combos_json).read_text())}
    top = image_combos[(text @ images.T).argmax(1)]
    counts = {}
    for want, got in zip(combos.tolist(), top.tolist()):
        if want != got:
            key = "+".join(k for k in attrs[want] if attrs[want][k] != attrs[got][k])
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def search_once(model_dir, data, work):
    """tools/search.py --text on an indexed folder of the held-out images: (query, top file, its combo's query?)."""
    from ppshitu.commands import index_folder, search

    rows = [json.loads(line) for line in (data / "heldout.jsonl").read_text().splitlines()]
    common = ["-c", str(ROOT / "configs" / "inference" / "inference_general.yaml"),
              "-o", f"Global.rec_inference_model_dir={model_dir}", "-o", "Global.inference_backend=openvino",
              "--index", str(work / "index")]
    index_folder.main(common + ["--dir", str(data / "images" / "heldout")])
    query = rows[0]["captions"][0]
    hits = search.main(common + ["--text", query, "--k", "1", "--out", str(work / "search_sheet.jpg")])
    top = Path(hits[0]["path"]).name
    combo_of = {Path(r["image"]).name: r["combo"] for r in rows}
    return query, top, combo_of[top] == rows[0]["combo"]


def run(args):
    from ppshitu.cli import apply_threads
    from ppshitu.utils.cpu import describe

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    times, out = {}, {"cpu": describe(), "quick": args.quick, "seed": args.seed, "load_avg_start": os.getloadavg()}
    states = work / "out" / "latest.pdstates"
    reuse = args.reuse and states.is_file()
    t = time.perf_counter()
    data = work / "data" if reuse else build_data(work, args.quick, args.seed)
    times["data"] = time.perf_counter() - t
    cfg = recipe(work, data, args.epochs, args.seed)
    apply_threads(cfg)
    from ppshitu.tasks import task_for

    task = task_for(cfg)
    t = time.perf_counter()
    if reuse:  # the checkpoint's own record of its training (epoch 0: before training)
        history = json.loads(states.read_text())["history"]
        out["reused"] = str(states)
    else:
        history = task.train(cfg)
        times["train (incl. features, 2 evals)"] = time.perf_counter() - t
    times["of which the training epochs"] = sum(h.get("epoch_time", 0.0) for h in history)
    out["untrained"], out["trained"] = history[0], history[-1]
    out["pairs"] = {s: sum(1 for _ in open(data / f"{s}.jsonl")) for s in ("train", "heldout")}
    t = time.perf_counter()
    cfg.Global.pretrained_model = str(work / "out" / "latest")
    shutil.rmtree(work / "export", ignore_errors=True)
    task.export(cfg, str(work / "export"))
    times["export"] = time.perf_counter() - t
    import yaml

    facts = yaml.safe_load((work / "export" / "clip_model.yml").read_text())
    out["onnx_vs_paddle_min_cosine"] = facts["onnx_vs_paddle_min_cosine"]
    t = time.perf_counter()
    from ppshitu.commands import import_model

    shutil.rmtree(work / "model", ignore_errors=True)
    shutil.rmtree(work / "index", ignore_errors=True)
    import_model.main(facts["import_args"] + ["--out", str(work / "model")])
    out["deployed"] = deployed_recall(work / "model", cfg.DataLoader.Eval)
    out["search"] = search_once(work / "model", data, work)
    times["import + deployed eval + index + search"] = time.perf_counter() - t
    out["seconds"] = times
    out["load_avg_end"] = os.getloadavg()  # other work on the machine slows every step
    return out


def render(r):
    u, t, d = r["untrained"], r["trained"], r["deployed"]
    rows = [("chance (random ranking)", t["chance_recall1"], t["chance_recall5"]),
            ("before training (ImageNet image backbone, untrained projection + text tower)", u["recall1"],
             u["recall5"]),
            (f"trained, final epoch {t['epoch']} (Paddle)", t["recall1"], t["recall5"]),
            ("trained, exported ONNX imported by tools/import_model.py (OpenVINO)", d["recall1"], d["recall5"])]
    lines = ["# Small text-image model: zero-shot text-to-image recall on held-out attribute combinations", "",
             r["cpu"] if r["cpu"].startswith("CPU") else f"CPU: {r['cpu']}", "",
             *([f"(Training figures from the checkpoint of an earlier run of this script: {r['reused']}.)", ""]
               if r.get("reused") else []),
             f"Data: {r['pairs']['train']} training image-caption pairs; {r['pairs']['heldout']} held-out images of "
             f"combinations never seen in training (queries: one caption per held-out combination). Seed "
             f"{r['seed']}{', --quick sizes' if r['quick'] else ''}. Recipe: configs/clip/clip_effnet_lite0_demo.yaml "
             f"(EfficientNet-Lite0 frozen at 96 px + MLP; 2-layer width-128 text transformer; D 128; ClipLoss).", "",
             "| model | recall@1 | recall@5 |", "|---|---|---|"]
    lines += [f"| {name} | {r1:.3f} | {r5:.3f} |" for name, r1, r5 in rows]
    wrong = d.get("misses") or {}
    if wrong:
        lines += ["", f"Where the first image is wrong ({sum(wrong.values())} of the queries, imported model): the "
                  "attributes it gets wrong: " + ", ".join(f"{k} {v}" for k, v in wrong.items()) + "."]
    q, top, ok = r["search"]
    lines += ["", f"ONNX vs Paddle, lowest cosine: image {r['onnx_vs_paddle_min_cosine']['image']:.6f}, text "
              f"{r['onnx_vs_paddle_min_cosine']['text']:.6f}.",
              f"tools/search.py --text \"{q}\" on the indexed held-out folder: top result {top} "
              f"({'an image of that combination' if ok else 'NOT an image of that combination'}).", "",
              "Seconds (2 shared cores; other jobs ran beside it): " +
              ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items()) +
              f". Load average (1 min) at start {r['load_avg_start'][0]:.1f}, at end {r['load_avg_end'][0]:.1f}."]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="120 training and 40 held-out combinations, 2 epochs")
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's (2 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse", action="store_true", help="reuse the data and the checkpoint a previous run left in "
                   "--work (its recorded history), then export, import and measure again")
    p.add_argument("--work", default=str(ROOT / "output" / "bench_clip"), help="data, checkpoints, export, index")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.epochs is None:
        import yaml

        args.epochs = 2 if args.quick else yaml.safe_load(RECIPE.read_text())["Global"]["epochs"]
    result = run(args)
    text = render(result)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "bench_clip_quick" if args.quick else "bench_clip"
    (out / f"{name}.md").write_text(text + "\n", encoding="utf-8")
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    print(f"saved {out / (name + '.md')}")


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")
    main()
