"""Captioned images of the synthetic objects, for the small text-image model (configs/clip/).

An object's attributes are its body colour, its pattern and its shape (dataset/synthetic.py names every class
"<colour> <pattern> <shape> <id>", e.g. "teal shaded heptagon 37"); captions are those words in a few templates.
A *combination* is one (colour, pattern, shape) triple. A fixed share of the combinations is held out: no
training image shows one, while every colour, pattern and shape on its own is seen in training, so the held-out
set measures whether the model composes words it knows into a description it never saw.

    make_caption_set(root, views_per_combo=4, heldout_views=2, heldout_share=0.12, seed=0)

Writes under `root`:
  images/train/NNNNN.jpg, images/heldout/NNNNN.jpg
  train.jsonl, heldout.jsonl   one image a line: {"image": relpath, "combo": id, "attributes": {...},
                               "captions": [every template filled in]}
  combos.json                  every combination: id, attributes, split (train / heldout)
  tokenizer.json               a byte-level BPE tokenizer learnt from the training captions only
"""
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dataset import synthetic

# classes scanned for combinations: every (shape family, pattern, palette) 4 times over, so the polygon family
# gives most of its six nouns (triangle ... octagon) for each pattern and colour
SCANNED_CLASSES = 4 * len(synthetic._COMBOS)
TEMPLATES = (
    "a photo of a {colour} {pattern} {shape}",   # the one evaluation queries use
    "{colour} {shape}, {pattern}",
    "a {pattern} {colour} {shape}",
    "{colour} {pattern} {shape}",
    "a picture of a {shape} that is {colour} and {pattern}",
    "the {shape} is {colour} with a {pattern} pattern",
)
ATTRIBUTES = ("colour", "pattern", "shape")
VOCAB_SIZE = 600


def attributes(class_id):
    """{"colour", "pattern", "shape"} of a synthetic class, from its name."""
    colour, pattern, shape, _ = synthetic.object_spec(class_id).name.split(" ")
    return {"colour": colour, "pattern": pattern, "shape": shape}


def captions(attrs):
    """Every template filled in with `attrs`; the first is the evaluation caption."""
    return [t.format(**attrs) for t in TEMPLATES]


def combinations():
    """[(attributes, [class ids showing them])], in a fixed order."""
    groups = {}
    for cid in range(SCANNED_CLASSES):
        a = attributes(cid)
        groups.setdefault(tuple(a[k] for k in ATTRIBUTES), []).append(cid)
    return [(dict(zip(ATTRIBUTES, key)), ids) for key, ids in sorted(groups.items())]


def split_combinations(combos, heldout_share, seed):
    """Indices of the held-out combinations: a random share, redrawn until every attribute value still
    appears in some training combination."""
    rng = np.random.default_rng([seed, 2801])
    n = max(1, round(heldout_share * len(combos)))
    for _ in range(100):
        held = set(rng.choice(len(combos), n, replace=False).tolist())
        seen = {(k, a[k]) for i, (a, _) in enumerate(combos) if i not in held for k in ATTRIBUTES}
        if all((k, a[k]) in seen for a, _ in combos for k in ATTRIBUTES):
            return held
    raise ValueError(f"cannot hold out {n} of {len(combos)} combinations and keep every attribute in training")


def _write_split(root, split, items, image_size, seed):
    rows = []
    for n, (combo, attrs, cid, view) in enumerate(tqdm(items, desc=f"captions {split}", unit="img", leave=False)):
        rel = f"images/{split}/{n:05d}.jpg"
        rng = synthetic._rng(seed, f"captions-{split}", cid, view)
        synthetic._save_jpeg(root / rel, synthetic.render_view(cid, rng, image_size))
        rows.append(json.dumps({"image": rel, "combo": combo, "class_id": cid, "attributes": attrs,
                                "captions": captions(attrs)}))
    synthetic._write_lines(root / f"{split}.jsonl", rows)
    return len(rows)


def make_caption_set(root, views_per_combo=4, heldout_views=2, heldout_share=0.12, image_size=96, seed=0,
                     max_train_combos=None, max_heldout_combos=None):
    """Write the captioned set (module docstring); returns a synthetic.Written.

    `max_train_combos` / `max_heldout_combos` keep only that many combinations of each split (tiny sets for
    tests; the tokenizer still learns from every training combination's captions)."""
    from ppshitu.clip.tokenizer import build_bpe_tokenizer

    root = Path(root)
    combos = combinations()
    held = split_combinations(combos, heldout_share, seed)
    train_ids = [i for i in range(len(combos)) if i not in held]
    items = {"train": [], "heldout": []}
    for split, ids, views in (("train", train_ids[:max_train_combos], views_per_combo),
                              ("heldout", sorted(held)[:max_heldout_combos], heldout_views)):
        for i in ids:
            attrs, cids = combos[i]
            items[split] += [(i, attrs, cids[v % len(cids)], v) for v in range(views)]
    counts = {split: _write_split(root, split, rows, image_size, seed) for split, rows in items.items()}
    table = [{"combo": i, "attributes": a, "split": "heldout" if i in held else "train", "class_ids": cids}
             for i, (a, cids) in enumerate(combos)]
    (root / "combos.json").write_text(json.dumps(table, indent=1), encoding="utf-8")
    train_captions = [c for i in train_ids for c in captions(combos[i][0])]
    build_bpe_tokenizer(train_captions, VOCAB_SIZE).save(str(root / "tokenizer.json"))
    return synthetic.Written(root, sum(counts.values()),
                             ("train.jsonl", "heldout.jsonl", "combos.json", "tokenizer.json"))
