"""The captioned set and the pieces of the text-image model that need no training: the held-out split keeps
every training combination out (and every single attribute in), the tokenizer is learnt from the training
captions only, the contrastive loss prefers the right pairs, and the recall/chance figures are right."""
import json

import numpy as np
import paddle
import pytest

from dataset import captions as cap
from ppshitu.clip.metrics import chance_recall, text_to_image_recall
from ppshitu.clip.tokenizer import text_tokenizer


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("captions")
    cap.make_caption_set(root, views_per_combo=1, heldout_views=1, image_size=48, max_train_combos=6,
                         max_heldout_combos=4)
    return root


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_heldout_combinations_never_in_training_but_each_attribute_is():
    combos = cap.combinations()
    held = cap.split_combinations(combos, 0.12, seed=0)
    train = {tuple(a.values()) for i, (a, _) in enumerate(combos) if i not in held}
    heldout = {tuple(combos[i][0].values()) for i in held}
    assert len(heldout) == len(held) > 50 and not heldout & train
    for k, key in enumerate(cap.ATTRIBUTES):
        assert {t[k] for t in heldout} <= {t[k] for t in train}, key
    assert cap.split_combinations(combos, 0.12, seed=0) == held  # the same seed: the same split


def test_written_set_splits_by_combination(tiny_set):
    train, heldout = _rows(tiny_set / "train.jsonl"), _rows(tiny_set / "heldout.jsonl")
    assert len(train) == 6 and len(heldout) == 4
    table = {c["combo"]: c for c in json.loads((tiny_set / "combos.json").read_text())}
    assert all(table[r["combo"]]["split"] == "train" for r in train)
    assert all(table[r["combo"]]["split"] == "heldout" for r in heldout)
    assert not {r["combo"] for r in train} & {r["combo"] for r in heldout}
    row = heldout[0]
    a = row["attributes"]
    assert row["captions"][0] == f"a photo of a {a['colour']} {a['pattern']} {a['shape']}"
    assert (tiny_set / row["image"]).is_file()


def test_tokenizer_from_training_captions_encodes_heldout_words(tiny_set):
    tok = text_tokenizer(tiny_set / "tokenizer.json", 16)
    heldout = _rows(tiny_set / "heldout.jsonl")
    out = tok.encode([r["captions"][0] for r in heldout])
    assert out.ids.shape == (4, 16) and not any(out.truncated)
    assert (out.ids[:, 0] == tok.sot_id).all()
    vocab = tok.tokenizer.get_vocab()
    for r in heldout:  # every attribute word of a held-out caption is one learnt token (seen in training)
        for word in r["attributes"].values():
            assert "\u0120" + word in vocab, word


def test_clip_loss_prefers_matching_pairs():
    from ppshitu.clip.loss import ClipLoss

    loss = ClipLoss(temperature=0.1)
    x = paddle.nn.functional.normalize(paddle.randn([8, 16]), axis=1)
    labels = paddle.arange(8)
    right = float(loss({"image": x, "text": x}, labels).mean())
    wrong = float(loss({"image": x, "text": paddle.roll(x, 1, 0)}, labels).mean())
    assert right < wrong
    # two pairs of one combination: each caption counts as right for both images
    labels = paddle.to_tensor([0, 0, 1, 2, 3, 4, 5, 6])
    swapped = paddle.concat([x[1:2], x[0:1], x[2:]])
    assert float(loss({"image": x, "text": swapped}, labels).mean()) < wrong


def test_recall_and_chance():
    image_combos = np.array([0, 0, 1, 2])
    text = np.eye(3, dtype=np.float32)
    images = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 0, 1], [0, 1, 0]], np.float32)
    r = text_to_image_recall(text, np.array([0, 1, 2]), images, image_combos, (1, 2))
    assert r == {"recall1": pytest.approx(1 / 3), "recall2": pytest.approx(1 / 3)}
    c = chance_recall(np.array([0, 1, 2]), image_combos, (1, 4))
    assert c["recall1"] == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3) and c["recall4"] == pytest.approx(1.0)


def test_bad_caption_lists_and_arch_are_refused_naming_the_place(tmp_path, tiny_set):
    from ppshitu.clip.data import CaptionList
    from ppshitu.clip.model import build_clip_model
    from ppshitu.errors import ConfigError

    ops = [{"ResizeImage": {"size": 48}}, {"NormalizeImage": {"scale": 0.00392156862745098, "mean": [0.5] * 3,
                                                              "std": [0.5] * 3, "order": "hwc"}}, {"ToCHWImage": {}}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a.jpg", "combo": 1, "captions": ["a red star"]}\n{"image": "b.jpg", "combo": 2}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: expected"):
        CaptionList({"dataset": {"name": "CaptionList", "list_path": str(bad), "transform_ops": ops}}, "DataLoader.Train")
    with pytest.raises(ConfigError, match=r"DataLoader.Train.dataset.list_path: .*missing.jsonl is not a file"):
        CaptionList({"dataset": {"name": "CaptionList", "list_path": str(tmp_path / "missing.jsonl"),
                                 "transform_ops": ops}}, "DataLoader.Train")
    good = {"dataset": {"name": "CaptionList", "list_path": str(tiny_set / "train.jsonl"), "transform_ops": ops},
            "sampler": {"batch_size": 1}}
    with pytest.raises(ConfigError, match="batch_size must be an int >= 2"):
        CaptionList(good, "DataLoader.Train")
    arch = {"name": "ClipModel", "ImageTower": {"Backbone": {"name": "EfficientNetLite0"}},
            "TextTower": {"tokenizer": str(tiny_set / "tokenizer.json"), "widht": 64}}
    with pytest.raises(ConfigError, match=r"Arch.TextTower: unknown keys \['widht'\]"):
        build_clip_model(arch, (3, 48, 48))
    arch["TextTower"] = {"tokenizer": str(tmp_path / "none.json")}
    with pytest.raises(ConfigError, match="none.json"):
        build_clip_model(arch, (3, 48, 48))
