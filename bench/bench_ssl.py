"""Self-supervised adaptation to an unlabelled folder, measured: unseen-class recall@1 of the ImageNet
EfficientNet-Lite0 off the shelf, adapted by SimCLR (configs/ssl/simclr_effnet_lite0.yaml), and a
convolutional autoencoder trained on the same images (configs/ssl/conv_autoencoder.yaml).

    .venv/bin/python bench/bench_ssl.py [--quick] [--domains synthetic photos]

Two domains, each with an unlabelled folder to adapt on and held-out classes to measure on (never seen
in adaptation, labels used only for measuring):

  synthetic   the demo's recognition set: adapt on the 320 images of its 40 training classes (labels
              ignored); measure on its 20 unseen classes (160 images)
  photos      scikit-image photos: adapt on crops of the calibration photos and textures
              (ppshitu/library/photos.py); measure on crops of other photos (BENCH_PHOTOS,
              BENCH_TEXTURES), each crop a class seen as 5 photographed-like views (random crop
              60-100 %, flip, brightness/contrast, 0-8 degree rotation, JPEG 60-90)

The held-out classes are split in two halves: `check` (the recipe's labelled check set, which picks
the step to keep and whether to keep the adaptation at all: keep_start_if_worse) and `test` (the
reported number, used for nothing else). recall@1: each image queries all others of its split; a hit
when the nearest is of its class.

What ppshitu/rec would need for tools/train.py to run these recipes (bench-side code here instead):
  1. an unlabelled dataset returning two (or `cached_views`) augmented views per image with the image's
     index as its label (rec/data: `UnlabelledFolder`, a `TwoViews` transform wrapper, ColorJitter /
     RandomGrayscale / RandomResizedCrop ops);
  2. a training-only projection head (`Arch.Projection`, dropped at export like Head) and the
     option of freezing the first stages (`Backbone.train_from_stage`);
  3. the trainer's EvalHook on a labelled check set, with epoch 0 = the start, and `keep_start_if_worse`
     (best_model already works that way when `key_metric` is set; the recipe needs it to refuse to
     export a worse model and say so);
  4. for the autoencoder: an `Arch.name: ConvAutoencoder` with a decoder used only in training, an
     `MSELoss` on the reconstruction, and export of the encoder (flattened bottleneck, L2-normalised).
Writes bench/results/bench_ssl.md and .json.
"""
import argparse
import json
import os
import sys
import time

import cv2
import numpy as np
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SIMCLR = os.path.join(ROOT, "configs", "ssl", "simclr_effnet_lite0.yaml")
AUTOENCODER = os.path.join(ROOT, "configs", "ssl", "conv_autoencoder.yaml")
RESULTS = os.path.join(ROOT, "bench", "results")


# ------------------------------------------------------------------ data
def synthetic_domain():
    from ppshitu.library.calibrate import DEMO_SET
    from ppshitu.utils.image import read_image

    root = os.path.join(ROOT, "data", "demo", "rec")
    if not os.path.isfile(os.path.join(root, "train_list.txt")):
        from dataset.synthetic import make_recognition_set
        root = os.path.join(ROOT, "bench", ".cache", "demo_rec")
        if not os.path.isfile(os.path.join(root, "train_list.txt")):
            make_recognition_set(root, **DEMO_SET)

    def rows(name):
        return [line.split() for line in open(os.path.join(root, name), encoding="utf-8") if line.strip()]
    unlabelled = [read_image(os.path.join(root, r[0])) for r in rows("train_list.txt")]
    held = [(read_image(os.path.join(root, r[0])), int(r[1])) for r in rows("test_list.txt")]
    return unlabelled, held


def photo_view(rgb, rng):
    """A 'photographed again' view: crop 60-100 %, flip, tone, small rotation, JPEG."""
    from ppshitu.library import photos

    h, w = rgb.shape[:2]
    s = rng.uniform(0.6, 1.0)
    ch, cw = int(h * s), int(w * s)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = rgb[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = np.clip((out.astype(np.float32) - 128) * rng.uniform(0.8, 1.2) + 128 + rng.uniform(-20, 20), 0, 255)
    out = out.astype(np.uint8)
    m = cv2.getRotationMatrix2D((out.shape[1] / 2, out.shape[0] / 2), rng.uniform(-8, 8), 1.0)
    out = cv2.warpAffine(np.ascontiguousarray(out), m, (out.shape[1], out.shape[0]), borderMode=cv2.BORDER_REFLECT_101)
    import io

    from PIL import Image
    data = photos.jpeg_bytes(out, int(rng.integers(60, 91)))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def photos_domain(seed=0, views=5):
    from ppshitu.library import photos

    rng = np.random.default_rng(seed)
    unlabelled = [x for _, x in photos.distinct_images(photos.CALIBRATION_PHOTOS + photos.CALIBRATION_TEXTURES,
                                                        16, rng, size=192)]
    classes = [x for _, x in photos.distinct_images(photos.BENCH_PHOTOS + photos.BENCH_TEXTURES, 16, rng,
                                                    size=192)]
    held = [(photo_view(x, rng), c) for c, x in enumerate(classes) for _ in range(views)]
    return unlabelled, held


def split_held(held):
    """(check, test): the held-out classes in two halves (alternate classes)."""
    classes = sorted({c for _, c in held})
    check = set(classes[0::2])
    return [h for h in held if h[1] in check], [h for h in held if h[1] not in check]


# ------------------------------------------------------------------ augmentation (SimCLR)
def simclr_view(rgb, size, aug, rng):
    h, w = rgb.shape[:2]
    lo, hi = aug["RandomResizedCrop"]["scale"]
    rlo, rhi = aug["RandomResizedCrop"].get("ratio", [0.75, 1.33])
    for _ in range(10):
        area = h * w * rng.uniform(lo, hi)
        ratio = np.exp(rng.uniform(np.log(rlo), np.log(rhi)))
        cw, ch = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            break
    else:
        cw, ch = w, h
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = cv2.resize(np.ascontiguousarray(rgb[y:y + ch, x:x + cw]), (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < aug.get("RandomFlip", {}).get("p", 0.5):
        out = out[:, ::-1]
    out = out.astype(np.float32)
    cj = aug.get("ColorJitter")
    if cj and rng.random() < cj.get("p", 0.8):
        out = out * rng.uniform(1 - cj["brightness"], 1 + cj["brightness"])
        mean = out.mean()
        out = (out - mean) * rng.uniform(1 - cj["contrast"], 1 + cj["contrast"]) + mean
        grey = out.mean(axis=2, keepdims=True)
        out = (out - grey) * rng.uniform(1 - cj["saturation"], 1 + cj["saturation"]) + grey
    if rng.random() < aug.get("RandomGrayscale", {}).get("p", 0.0):
        out = np.repeat(out.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(out, 0, 255)


def plain_view(rgb, size):
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


# ------------------------------------------------------------------ metrics
def recall_at_1(vectors, labels):
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    s = v @ v.T
    np.fill_diagonal(s, -np.inf)
    labels = np.asarray(labels)
    return float(np.mean(labels[np.argmax(s, axis=1)] == labels))


# ------------------------------------------------------------------ SimCLR on cached trunk maps
class Tail:
    """The trainable end of EfficientNet-Lite0 (stages >= train_from_stage, head, pooling)."""

    def __init__(self, backbone, split):
        self.bb, self.split = backbone, split

    def trunk(self, x):
        import paddle
        with paddle.no_grad():
            y = self.bb.stem(x)
            for blk in list(self.bb.blocks)[:self.split]:
                y = blk(y)
        return y

    def __call__(self, maps):
        y = maps
        for blk in list(self.bb.blocks)[self.split:]:
            y = blk(y)
        return self.bb.pool(self.bb.head(y))

    def parameters(self):
        tail = list(self.bb.blocks)[self.split:]
        return [p for blk in tail for p in blk.parameters()] + list(self.bb.head.parameters())


def normalise(batch, pre):
    """float32 HWC [0, 255] images -> NCHW network input: pixel * scale, then (x - mean) / std, as the
    pretrained weights were trained."""
    x = np.stack(batch).transpose(0, 3, 1, 2) * pre.scale
    mean = np.asarray(pre.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(pre.std, np.float32).reshape(1, 3, 1, 1)
    return ((x - mean) / std).astype(np.float32)


def cache_maps(tail, images, pre, chunk=64):
    import paddle
    out = []
    for i in range(0, len(images), chunk):
        out.append(tail.trunk(paddle.to_tensor(normalise(images[i:i + chunk], pre))).numpy())
    return np.concatenate(out)


def embed_maps(tail, maps, chunk=128):
    import paddle
    out = []
    with paddle.no_grad():
        for i in range(0, len(maps), chunk):
            out.append(tail(paddle.to_tensor(maps[i:i + chunk])).numpy())
    return np.concatenate(out)


def run_simclr(cfg, unlabelled, check, test, quick=False, log=print):
    import paddle

    from ppshitu.engine import backbones
    from ppshitu.rec.losses import SupConLoss

    g, bb_cfg = cfg["Global"], cfg["Arch"]["Backbone"]
    size, steps, every, nviews = g["image_size"], g["steps"], g["eval_interval"], g["cached_views"]
    if quick:
        steps, every, nviews = 12, 6, 2
    rng = np.random.default_rng(g["seed"])
    paddle.seed(g["seed"])
    bb = backbones.create_backbone(bb_cfg["name"], pooling=bb_cfg.get("pooling", "avg"))
    backbones.load_pretrained(bb, bb_cfg["name"], bb_cfg["pretrained"])
    bb.eval()  # freeze_bn: BatchNorm keeps ImageNet's statistics (and the frozen stages are inference-only)
    pre = backbones.pretrained_cfg(bb_cfg["name"])
    split = bb.stage_ends[bb_cfg["train_from_stage"] - 1] + 1
    tail = Tail(bb, split)
    for p in bb.parameters():
        p.stop_gradient = True
    for p in tail.parameters():
        p.stop_gradient = False

    t0 = time.time()
    aug = cfg["DataLoader"]["Train"]["augment"]
    views = np.stack([cache_maps(tail, [simclr_view(x, size, aug, rng) for x in unlabelled], pre)
                      for _ in range(nviews)], axis=1)                        # [N, V, C, h, w]
    eval_maps = {name: cache_maps(tail, [plain_view(x, size) for x, _ in split_set], pre)
                 for name, split_set in (("check", check), ("test", test))}
    eval_labels = {"check": [c for _, c in check], "test": [c for _, c in test]}
    cache_s = time.time() - t0
    log(f"  cached {views.shape[0]} x {views.shape[1]} views + {sum(len(m) for m in eval_maps.values())} "
        f"held-out images in {cache_s:.0f} s")

    def evaluate():
        bb.eval()
        return {k: recall_at_1(embed_maps(tail, m), eval_labels[k]) for k, m in eval_maps.items()}

    ph = cfg["Arch"]["Projection"]
    proj = paddle.nn.Sequential(paddle.nn.Linear(bb.out_channels, ph["hidden"]), paddle.nn.ReLU(),
                                paddle.nn.Linear(ph["hidden"], ph["out"]))
    o = cfg["Optimizer"]
    lr = o["lr"]["learning_rate"]
    opt = paddle.optimizer.AdamW(learning_rate=lr, weight_decay=o.get("weight_decay", 0.0), parameters=[
        {"params": tail.parameters()},
        {"params": list(proj.parameters()), "learning_rate": o["lr"].get("projection_lr_mult", 10.0)}])
    loss_spec = cfg["Loss"]["Train"][0]["SupConLoss"]
    loss_fn = SupConLoss(loss_spec["temperature"], feature_from="z")
    batch = min(cfg["DataLoader"]["Train"]["sampler"]["batch_size"], len(unlabelled))
    history = [{"step": 0, **evaluate()}]
    log(f"  step 0 (ImageNet, off the shelf): {history[-1]}")
    start_state = {k: v.numpy().copy() for k, v in bb.state_dict().items()}
    best = (history[0]["check"], 0, start_state)
    t1 = time.time()
    for step in range(1, steps + 1):
        idx = rng.choice(len(unlabelled), batch, replace=False)
        pairs = np.stack([rng.choice(views.shape[1], 2, replace=False) for _ in idx])
        maps = np.concatenate([views[idx, pairs[:, 0]], views[idx, pairs[:, 1]]])
        labels = paddle.to_tensor(np.concatenate([idx, idx]).astype(np.int64))
        z = proj(tail(paddle.to_tensor(maps)))
        loss = loss_fn({"z": z}, labels).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()
        if step % every == 0 or step == steps:
            history.append({"step": step, "loss": round(float(loss), 4), **evaluate()})
            log(f"  step {step}: {history[-1]}")
            if history[-1]["check"] > best[0]:
                best = (history[-1]["check"], step, {k: v.numpy().copy() for k, v in bb.state_dict().items()})
    train_s = time.time() - t1
    last = history[-1]
    keep_start = g.get("keep_start_if_worse", True) and best[1] == 0
    bb.set_state_dict({k: paddle.to_tensor(v) for k, v in best[2].items()})
    final = evaluate()
    return {"start": history[0], "last": last, "kept_step": best[1], "kept": final,
            "kept_start": keep_start, "history": history, "cache_s": round(cache_s, 1),
            "train_s": round(train_s, 1), "steps": steps, "views": int(views.shape[1]),
            "unlabelled": len(unlabelled)}


# ------------------------------------------------------------------ convolutional autoencoder
def build_autoencoder(arch):
    import paddle.nn as nn

    ch, bott = arch["channels"], arch["bottleneck"]
    enc, c_in = [], 3
    for c in ch:
        enc += [nn.Conv2D(c_in, c, 3, stride=2, padding=1), nn.BatchNorm2D(c), nn.ReLU()]
        c_in = c
    enc += [nn.Conv2D(c_in, bott, 3, padding=1)]
    dec = [nn.Conv2D(bott, ch[-1], 3, padding=1), nn.ReLU()]
    for c_out in list(reversed(ch[:-1])) + [16]:
        dec += [nn.Conv2DTranspose(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2D(c_out), nn.ReLU()]
        c_in = c_out
    dec += [nn.Conv2D(c_in, 3, 3, padding=1), nn.Sigmoid()]
    return nn.Sequential(*enc), nn.Sequential(*dec)


def run_autoencoder(cfg, unlabelled, check, test, quick=False, log=print):
    import paddle

    g = cfg["Global"]
    size, epochs, batch = g["image_size"], g["epochs"], g["batch_size"]
    if quick:
        epochs = 2
    rng = np.random.default_rng(g["seed"])
    paddle.seed(g["seed"])
    enc, dec = build_autoencoder(cfg["Arch"])
    params = list(enc.parameters()) + list(dec.parameters())
    opt = paddle.optimizer.Adam(learning_rate=cfg["Optimizer"]["lr"]["learning_rate"], parameters=params)
    aug = {"RandomResizedCrop": cfg["DataLoader"]["Train"]["augment"]["RandomResizedCrop"],
           "RandomFlip": cfg["DataLoader"]["Train"]["augment"].get("RandomFlip", {"p": 0.5})}

    def embed(images):
        enc.eval()
        x = np.stack([plain_view(im, size) / 255.0 for im, _ in images]).transpose(0, 3, 1, 2).astype(np.float32)
        with paddle.no_grad():
            v = enc(paddle.to_tensor(x)).numpy().reshape(len(images), -1)
        return v

    def evaluate():
        return {name: recall_at_1(embed(s), [c for _, c in s]) for name, s in (("check", check), ("test", test))}
    t0 = time.time()
    history = []
    for epoch in range(1, epochs + 1):
        enc.train(), dec.train()
        order = rng.permutation(len(unlabelled))
        losses = []
        for i in range(0, len(order), batch):
            imgs = [simclr_view(unlabelled[j], size, aug, rng) / 255.0 for j in order[i:i + batch]]
            x = paddle.to_tensor(np.stack(imgs).transpose(0, 3, 1, 2).astype(np.float32))
            loss = paddle.mean((dec(enc(x)) - x) ** 2)
            loss.backward()
            opt.step()
            opt.clear_grad()
            losses.append(float(loss))
        if epoch % max(1, epochs // 4) == 0 or epoch == epochs:
            history.append({"epoch": epoch, "mse": round(float(np.mean(losses)), 5), **evaluate()})
            log(f"  autoencoder epoch {epoch}: {history[-1]}")
    return {"final": history[-1], "history": history, "train_s": round(time.time() - t0, 1), "epochs": epochs,
            "embedding": int(cfg["Arch"]["bottleneck"] * (size // 2 ** len(cfg["Arch"]["channels"])) ** 2)}


# ------------------------------------------------------------------ report
def render(res):
    lines = ["# Self-supervised adaptation to an unlabelled folder", "",
             "`bench/bench_ssl.py`" + (" --quick" if res["quick"] else "") + ": unseen-class recall@1 (each held-out "
             "image queries the others of its split). `check` = the held-out half the recipe uses to pick what to "
             "keep; `test` = the other half, reported, used for nothing else. SimCLR: configs/ssl/simclr_effnet_lite0"
             ".yaml (stages 5-6 + head trained from cached frozen-stage maps, CPU); autoencoder: configs/ssl/"
             "conv_autoencoder.yaml (from scratch).", "",
             "| domain | unlabelled images | held-out classes (images) | off the shelf (ImageNet) | SimCLR last step | "
             "SimCLR kept (step) | autoencoder | verdict |", "|---|---|---|---|---|---|---|---|"]
    for d, r in res["domains"].items():
        s, a = r["simclr"], r["autoencoder"]
        start, kept = s["start"]["test"], s["kept"]["test"]
        if s["kept_step"] == 0:
            verdict = "adaptation did not raise the check set's recall@1: the start is kept (nothing gained)"
        elif kept < start:
            verdict = f"WORSE than the start on test ({kept - start:+.3f}) although better on check"
        else:
            verdict = f"adapted: {kept - start:+.3f} on test"
        if s["last"]["test"] < start:
            verdict += f"; the last step alone would be WORSE ({s['last']['test'] - start:+.3f})"
        verdict += f"; autoencoder {a['final']['test'] - start:+.3f} vs the start"
        lines.append(f"| {d} | {s['unlabelled']} | {r['held_classes']} ({r['held_images']}) | {start:.3f} | "
                     f"{s['last']['test']:.3f} | {kept:.3f} ({s['kept_step']}) | {a['final']['test']:.3f} | "
                     f"{verdict} |")
    lines += ["", "Check-set recall@1 along training (SimCLR steps; autoencoder epochs):", ""]
    for d, r in res["domains"].items():
        hist = ", ".join(f"{h['step']}: {h['check']:.3f}" for h in r["simclr"]["history"])
        ae = ", ".join(f"{h['epoch']}: {h['check']:.3f}" for h in r["autoencoder"]["history"])
        lines.append(f"- {d}: SimCLR {hist}; autoencoder {ae}; times: cache {r['simclr']['cache_s']} s, SimCLR "
                     f"{r['simclr']['train_s']} s, autoencoder {r['autoencoder']['train_s']} s")
    lines += ["", "Caveats: the photo domain's held-out views are augmentations of one crop, a family close to "
              "SimCLR's own augmentations, which favours SimCLR there; both sets are small (recall@1 moves in steps "
              "of 1/images), so differences of a few points are within noise."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--domains", nargs="+", default=["synthetic", "photos"], choices=["synthetic", "photos"])
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args(argv)
    import paddle
    paddle.set_device("cpu")
    simclr = yaml.safe_load(open(SIMCLR, encoding="utf-8"))
    ae = yaml.safe_load(open(AUTOENCODER, encoding="utf-8"))
    res = {"quick": args.quick, "domains": {},
           "configs": [os.path.relpath(SIMCLR, ROOT), os.path.relpath(AUTOENCODER, ROOT)]}
    for d in args.domains:
        print(f"{d}:", flush=True)
        unlabelled, held = synthetic_domain() if d == "synthetic" else photos_domain()
        if args.quick:
            unlabelled, held = unlabelled[:48], [h for h in held if h[1] in sorted({c for _, c in held})[:8]]
        check, test = split_held(held)
        res["domains"][d] = {"held_classes": len({c for _, c in held}), "held_images": len(held),
                             "simclr": run_simclr(simclr, unlabelled, check, test, args.quick),
                             "autoencoder": run_autoencoder(ae, unlabelled, check, test, args.quick)}
    text = render(res)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    name = "bench_ssl_quick" if args.quick else "bench_ssl"
    with open(os.path.join(args.out, name + ".md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(args.out, name + ".json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
