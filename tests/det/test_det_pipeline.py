"""Train -> evaluate -> export -> predict for the demo detector on generated scenes.

One short training run (shared by the module) overfits a few scenes: the trained
model must clearly beat the untrained one on them, the exported program must give
the training graph's boxes, and the predictor's boxes must be clipped and ranked.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from ppshitu.config import load_config
from dataset.synthetic import make_scenes
from ppshitu.det import task
from ppshitu.det.data import DetEvalLoader, DetTrainLoader
from ppshitu.det.metrics import evaluate_detector
from ppshitu.errors import ConfigError
from ppshitu.infer.det import DetPredictor, select_boxes
from ppshitu.schemas import TRAIN_SCHEMA
from ppshitu.utils.image import read_image
from tests.detection_helpers import assert_same_detections

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/det/picodet_demo.yaml"
EPOCHS = 20


def _overrides(scenes, out, *extra):
    json_path = str(scenes / "train.json")
    return [
        f"DataLoader.Train.dataset.anno_path={json_path}", f"DataLoader.Eval.dataset.anno_path={json_path}",
        "DataLoader.Train.sampler.batch_size=8", "DataLoader.Train.dataset.batch_transform_ops.0"
        ".BatchRandomResize.target_size=[160]", f"Global.epochs={EPOCHS}", f"Global.output_dir={out}",
        f"Global.eval_interval={EPOCHS}", f"Global.save_interval={EPOCHS}", "Global.print_batch_step=100",
        "Optimizer={name: AdamW, weight_decay: 0.0001, lr: {name: Cosine, learning_rate: 0.005, warmup_epoch: 1}}",
        "Arch.head.static_assigner_epoch=8", "EMA.decay=0.9",
        "DataLoader.Train.dataset.transform_ops=[{RandomFlip: {prob: 0.5}}]",
        "DataLoader.Eval.dataset.transform_ops.0.DetResize.target_size=[160, 160]", *extra]


def _cfg(scenes, out, *extra):
    return load_config(CONFIG, _overrides(scenes, out, *extra), TRAIN_SCHEMA)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("det_scenes")
    make_scenes(root, num_images=16, image_size=(160, 200), objects_per_image=(1, 2), object_classes=range(10),
                split="train")
    return root


@pytest.fixture(scope="module")
def trained(scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("det_run")
    cfg = _cfg(scenes, out)
    untrained = evaluate_detector(task.build_model(cfg), DetEvalLoader(cfg))
    history = task.train(cfg)
    return {"cfg": cfg, "out": out, "untrained": untrained, "history": history}


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("det_inference")
    cfg = _cfg_with(trained, f"Global.pretrained_model={trained['out']}/best_model")
    task.export(cfg, str(out))
    return out


def _cfg_with(trained, *extra):
    return _cfg(Path(trained["cfg"].DataLoader.Train.dataset.anno_path).parent, trained["out"], *extra)


def test_training_beats_the_untrained_model(trained):
    final = trained["history"][-1]
    assert len(trained["history"]) == EPOCHS and math.isfinite(final["loss"])
    assert trained["history"][0]["loss"] > final["loss"]
    ap50, before = final["AP50"], trained["untrained"]["AP50"]
    assert ap50 > 0.08 and ap50 > 5 * before, (before, final)  # measured: 0.136 vs 0.007
    for name in ("latest", "best_model", f"epoch_{EPOCHS}"):
        for ext in (".pdparams", ".pdopt", ".pdstates", ".pdema"):
            assert (trained["out"] / (name + ext)).is_file(), name + ext


def test_evaluate_scores_the_saved_ema_weights(trained):
    metrics = task.evaluate(_cfg_with(trained, f"Global.pretrained_model={trained['out']}/best_model"))
    assert metrics["AP50"] == pytest.approx(trained["history"][-1]["AP50"], abs=1e-6)
    assert 0 <= metrics["mAP"] <= metrics["AP50"] <= 1


def test_eval_tool_reports_the_same_metrics(trained):
    scenes = Path(trained["cfg"].DataLoader.Train.dataset.anno_path).parent
    args = _overrides(scenes, trained["out"], f"Global.pretrained_model={trained['out']}/best_model")
    proc = subprocess.run([sys.executable, str(ROOT / "tools/eval.py"), "-c", str(CONFIG)]
                          + [a for o in args for a in ("-o", o)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics["AP50"] == pytest.approx(trained["history"][-1]["AP50"], abs=1e-6)


def test_exported_program_matches_training_graph(trained, exported):
    spec = (exported / "inference.yml").read_text()
    assert "model_type: det" in spec and "foreground" in spec
    cfg = _cfg_with(trained, f"Global.pretrained_model={trained['out']}/best_model")
    model = task._trained_model(cfg)
    model.eval()
    det = DetPredictor(str(exported), threshold=0.0, max_det_results=100)
    batch = next(iter(DetEvalLoader(cfg)))
    with paddle.no_grad():
        ref_bbox, ref_num = (t.numpy() for t in model(*(paddle.to_tensor(batch[k]) for k in
                                                       ("image", "im_shape", "scale_factor"))))
    bbox, num = det.run(batch["image"], batch["im_shape"], batch["scale_factor"])
    assert ref_num.sum() > 0 and ref_bbox[:, 1].max() > 0.05
    # oneDNN kernels round differently from dygraph's, and differently on each CPU: per image, every box clear
    # of NMS's score (0.025) and overlap (0.6) thresholds is in both, in [x1, y1, x2, y2, score] rows
    ref_at, at = np.cumsum(np.r_[0, ref_num]), np.cumsum(np.r_[0, num])
    for k in range(len(ref_num)):
        a, b = ref_bbox[ref_at[k]:ref_at[k + 1]], bbox[at[k]:at[k + 1]]
        thr = max(0.025, a[:, 1].min() if len(a) >= 100 else 0.0)  # keep_top_k full: its cut is the threshold
        assert_same_detections(a[:, [2, 3, 4, 5, 1]], b[:, [2, 3, 4, 5, 1]], score_thr=thr)


def test_predictor_returns_ranked_clipped_boxes(trained, exported, scenes):
    coco = json.loads((scenes / "train.json").read_text())
    image = read_image(scenes / "images" / coco["images"][0]["file_name"])
    boxes = DetPredictor(str(exported), threshold=0.0, max_det_results=5).predict(image)
    assert boxes.dtype == np.float32 and boxes.shape == (5, 5)
    h, w = image.shape[:2]
    assert np.all(boxes[:, [0, 2]] >= 0) and np.all(boxes[:, [0, 2]] <= w)
    assert np.all(boxes[:, [1, 3]] >= 0) and np.all(boxes[:, [1, 3]] <= h)
    assert np.all(np.diff(boxes[:, 4]) <= 0)
    # the same boxes as the training graph, in the original 200x160 image's pixels
    model = task._trained_model(_cfg_with(trained, f"Global.pretrained_model={trained['out']}/best_model"))
    model.eval()
    chw, im_shape, scale_factor = DetPredictor(str(exported)).preprocess(image)
    with paddle.no_grad():
        rows, _ = model(*(paddle.to_tensor(a[None]) for a in (chw, im_shape, scale_factor)))
    np.testing.assert_allclose(boxes, select_boxes(rows.numpy(), h, w, 0.0, 5), atol=0.05)
    # the threshold keeps exactly the boxes scoring at least it
    cut = float(boxes[2, 4])
    kept = DetPredictor(str(exported), threshold=cut, max_det_results=5).predict(image)
    np.testing.assert_allclose(kept, boxes[boxes[:, 4] >= cut])
    # nothing above the threshold: an empty result, not an error
    assert DetPredictor(str(exported), threshold=1.01).predict(image).shape == (0, 5)


def test_resume_repeats_the_uninterrupted_run(scenes, tmp_path):
    """Two epochs straight == one epoch, then resume for the second (weights and EMA)."""
    short = ("Global.max_iters_per_epoch=1", "Global.eval_during_train=false", "Global.save_interval=1")
    straight = _cfg(scenes, tmp_path / "a", "Global.epochs=2", *short)
    task.train(straight)
    task.train(_cfg(scenes, tmp_path / "b", "Global.epochs=1", *short))
    task.train(_cfg(scenes, tmp_path / "b", "Global.epochs=2", f"Global.checkpoints={tmp_path}/b/epoch_1", *short))
    for ext in (".pdparams", ".pdema"):
        a, b = paddle.load(str(tmp_path / "a" / ("latest" + ext))), paddle.load(str(tmp_path / "b" / ("latest" + ext)))
        if ext == ".pdema":
            assert a["step"] == b["step"] == 2
            a, b = a["shadow"], b["shadow"]
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def test_training_batches_are_padded_and_reproducible(scenes, tmp_path):
    cfg = _cfg(scenes, tmp_path)
    a, b = DetTrainLoader(cfg, seed=3), DetTrainLoader(cfg, seed=3)
    a.set_epoch(1)
    b.set_epoch(1)
    first, again = next(iter(a)), next(iter(b))
    for k in first:
        np.testing.assert_array_equal(first[k], again[k])
    assert first["image"].shape == (8, 3, 160, 160) and first["gt_class"].dtype == np.int64
    n = first["pad_gt_mask"].sum(1)[:, 0]
    assert np.all(n >= 1) and np.all(n <= 2)
    b.set_epoch(2)
    assert not np.array_equal(next(iter(b))["image"], first["image"])


def test_config_errors_name_the_key(scenes, tmp_path):
    with pytest.raises(ConfigError, match=r"Arch.backbone.LCNet: unknown key 'scal'.*did you mean.*scale"):
        task.build_model(_cfg(scenes, tmp_path, "Arch.backbone.scal=0.5"))
    with pytest.raises(ConfigError, match=r"Arch.head.PicoHeadV2.loss_class.VFL: unknown det head part 'VFL'.*VarifocalLoss"):
        task.build_model(_cfg(scenes, tmp_path, "Arch.head.loss_class.name=VFL"))
    with pytest.raises(ConfigError, match="Global.pretrained_model: give the trained weights"):
        task.evaluate(_cfg(scenes, tmp_path))


def test_head_parts_must_be_configured(scenes, tmp_path):
    cfg = _cfg(scenes, tmp_path)
    del cfg.Arch.head["static_assigner"]
    with pytest.raises(ConfigError, match=r"Arch.head.PicoHeadV2: missing static_assigner \(e.g. {name: ATSSAssigner"):
        task.build_model(cfg)
    cfg = _cfg(scenes, tmp_path, "Arch.head.loss_bbox=GIoULoss")  # a bare name is a part with defaults
    assert type(task.build_model(cfg).head.loss_bbox).__name__ == "GIoULoss"


def test_unreadable_training_images_are_skipped_and_counted(scenes, tmp_path, caplog):
    coco = json.loads((scenes / "train.json").read_text())
    coco["images"][0]["file_name"] = "missing.jpg"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(coco))
    cfg = _cfg(scenes, tmp_path, f"DataLoader.Train.dataset.anno_path={path}",
               f"DataLoader.Train.dataset.image_root={scenes / 'images'}", "DataLoader.Train.sampler.shuffle=false")
    loader = DetTrainLoader(cfg)
    batches = list(loader)
    assert [len(b["image"]) for b in batches] == [7, 8]
    assert loader.skipped_images == 1
    assert "missing.jpg" in caplog.text and "1 unreadable images skipped this epoch" in caplog.text
