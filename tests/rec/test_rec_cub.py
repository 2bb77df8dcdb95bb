"""CUB preparation on the miniature CUB tree, and the real CUB recipe running on it."""
import json
import os
import subprocess
import sys

import paddle
import pytest

from dataset import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "dataset"))
import prepare_cub  # noqa: E402


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub")
    synthetic.make_mini_cub(root, images_per_class=2, image_size=64, seed=0)
    return root / "CUB_200_2011"


def _snapshot(directory):
    return sorted((p, os.path.getsize(os.path.join(d, p))) for d, _, files in os.walk(directory) for p in files)


def test_prepare_writes_split_lists_without_touching_images(cub):
    before = _snapshot(cub / "images")
    counts = prepare_cub.prepare(str(cub))
    assert counts == {"train_list.txt": 200, "test_list.txt": 200}
    assert _snapshot(cub / "images") == before
    rows = [line.split() for line in (cub / "train_list.txt").read_text().splitlines()]
    assert {int(r[1]) for r in rows} == set(range(1, 101))
    test_rows = [line.split() for line in (cub / "test_list.txt").read_text().splitlines()]
    assert {int(r[1]) for r in test_rows} == set(range(101, 201))
    uids = [int(r[2]) for r in rows + test_rows]
    assert len(set(uids)) == 400
    assert all(os.path.isfile(cub / r[0]) for r in rows + test_rows)
    assert rows[0][0].startswith("images/001.")


def test_prepare_crop_bbox_writes_crops_elsewhere(cub, tmp_path):
    from ppshitu.utils.image import read_image
    out = tmp_path / "crops_out"
    counts = prepare_cub.prepare(str(cub), str(out), crop_bbox=True)
    assert counts == {"train_list.txt": 200, "test_list.txt": 200}
    rel, _, uid = (out / "train_list.txt").read_text().splitlines()[0].split()
    x, y, w, h = map(float, (cub / "bounding_boxes.txt").read_text().splitlines()[int(uid) - 1].split()[1:])
    crop = read_image(out / rel)
    assert abs(crop.shape[0] - h) <= 1 and abs(crop.shape[1] - w) <= 1


def test_prepare_errors(tmp_path):
    from ppshitu.errors import PPShiTuError
    with pytest.raises(PPShiTuError, match="images.txt not found: is this a CUB_200_2011 directory"):
        prepare_cub.prepare(str(tmp_path))
    (tmp_path / "images.txt").write_text("1 a.jpg\nx\n")
    (tmp_path / "image_class_labels.txt").write_text("1 1\n")
    with pytest.raises(PPShiTuError, match=r"images.txt:2: expected an id and 1 field"):
        prepare_cub.prepare(str(tmp_path))


def test_cub_recipe_trains_with_path_overrides_only(cub, tmp_path):
    """The real config (MobileNetV1 at 224, P×K sampler, 4 loader workers), one iteration."""
    prepare_cub.prepare(str(cub))
    from ppshitu.rec.model import build_rec_model
    weights = tmp_path / "MobileNetV1_pretrained.pdparams"
    backbone = build_rec_model({"Backbone": {"name": "MobileNetV1"}}, (3, 32, 32)).backbone
    paddle.save(backbone.state_dict(), str(weights))
    data = f"{cub}/"
    overrides = [f"Arch.Backbone.pretrained={weights}", f"Global.output_dir={tmp_path}/out",
                 f"DataLoader.Train.dataset.image_root={data}",
                 f"DataLoader.Train.dataset.cls_label_path={data}train_list.txt"]
    for part in ("Query", "Gallery"):
        overrides += [f"DataLoader.Eval.{part}.dataset.image_root={data}",
                      f"DataLoader.Eval.{part}.dataset.cls_label_path={data}test_list.txt"]
    # speed only (evaluation is covered by the end-to-end test): one step, no eval
    overrides += ["Global.epochs=1", "Global.max_iters_per_epoch=1", "DataLoader.Train.sampler.batch_size=8",
                  "Global.eval_during_train=False"]
    cmd = [sys.executable, "tools/train.py", "-c", "configs/rec/MobileNetV1_retrieval_CUB.yaml"]
    for o in overrides:
        cmd += ["-o", o]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out" / "RecModel"
    states = json.loads((out / "latest.pdstates").read_text())
    assert states["epoch"] == 1 and states["global_step"] == 1
    assert "TripletLossV2" in states["history"][-1] and "CELoss" in states["history"][-1]
    assert (out / "latest.pdparams").is_file() and (out / "latest.pdopt").is_file()
    assert "images/s" in proc.stderr


def test_efficientnet_cub_recipe_retargets_with_the_same_keys(cub, tmp_path):
    """EfficientNetLite0_retrieval_CUB.yaml takes the MobileNetV1 recipe's data keys and Arch.Head.class_num,
    and starts from the installed ImageNet weights (no network): one step, each loss term logged."""
    prepare_cub.prepare(str(cub))
    data = f"{cub}/"
    overrides = [f"Global.output_dir={tmp_path}/out", f"DataLoader.Train.dataset.image_root={data}",
                 f"DataLoader.Train.dataset.cls_label_path={data}train_list.txt", "Arch.Head.class_num=100",
                 "Global.epochs=1", "Global.max_iters_per_epoch=1", "DataLoader.Train.sampler.batch_size=8",
                 "Global.eval_during_train=False", "DataLoader.Train.loader.num_workers=0"]
    for part in ("Query", "Gallery"):
        overrides += [f"DataLoader.Eval.{part}.dataset.image_root={data}",
                      f"DataLoader.Eval.{part}.dataset.cls_label_path={data}test_list.txt"]
    cmd = [sys.executable, "tools/train.py", "-c", "configs/rec/EfficientNetLite0_retrieval_CUB.yaml"]
    for o in overrides:
        cmd += ["-o", o]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = json.loads((tmp_path / "out" / "RecModel" / "latest.pdstates").read_text())
    assert {"SupConLoss", "TripletLossV2", "CELoss"} <= set(states["history"][-1])
    assert "Arch.Backbone.pretrained: loaded" in proc.stderr  # the installed ImageNet weights were read
