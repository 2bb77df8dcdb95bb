"""Cheaper training epochs (issue 27): Arch.Backbone.freeze_stages (the stem and the first N stages of an
EfficientNet-Lite fixed, no backward through them) and Global.image_size_schedule (smaller images for the
first epochs). Tiny inputs and one step per epoch: seconds."""
import numpy as np
import paddle
import pytest

from dataset import synthetic
from ppshitu.config import load_config
from ppshitu.engine.hooks import HookBase
from ppshitu.errors import ConfigError
from ppshitu.rec import task as rec_task
from ppshitu.rec.data.transforms import build_transforms
from ppshitu.rec.model import build_rec_model
from ppshitu.rec.size_schedule import size_at, size_op
from ppshitu.schemas import TRAIN_SCHEMA

RECIPE = "configs/rec/EfficientNetLite0_demo.yaml"


def _arch(**backbone):
    return {"name": "RecModel", "Backbone": {"name": "EfficientNetLite0", "pretrained": False, **backbone},
            "Neck": {"FC": {"class_num": 16}}}


@pytest.mark.parametrize("value", [8, -1, True, "2", 1.5])
def test_freeze_stages_out_of_range_is_refused_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"Arch\.Backbone\.freeze_stages .*0 \(none\) to 7"):
        build_rec_model(_arch(freeze_stages=value), (3, 32, 32))


def test_misspelt_freeze_stages_gets_the_nearest_name():
    with pytest.raises(ConfigError, match=r"did you mean Arch\.Backbone\.freeze_stages"):
        build_rec_model(_arch(freeze_stage=2), (3, 32, 32))


def test_no_backward_below_the_frozen_stages():
    """The input's gradient exists only when nothing is frozen: with freeze_stages the backward pass
    stops at the last frozen stage's output."""
    grads = {}
    for n in (0, 2):
        paddle.seed(0)
        model = build_rec_model(_arch(freeze_stages=n), (3, 32, 32))
        model.train()
        x = paddle.randn([2, 3, 32, 32])
        x.stop_gradient = False
        (model(x)["features"] ** 2).mean().backward()
        grads[n] = x.grad
        weights = {k: p for k, p in model.backbone.named_parameters() if not k.endswith(("_mean", "_variance"))}
        frozen = [p for k, p in weights.items() if k.startswith(("stem.", "blocks.2."))]
        assert frozen and all(p.stop_gradient == (n > 0) for p in frozen)
        assert not any(p.stop_gradient for k, p in weights.items() if k.startswith("blocks.3."))  # stage 3 trains
    assert grads[0] is not None and float(paddle.abs(grads[0]).sum()) > 0
    assert grads[2] is None


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("cheap_epochs")
    synthetic.make_recognition_set(root, num_classes=6, views_per_class=4, image_size=48, num_train_classes=4,
                                   seed=0)
    return root


def _tiny_cfg(data, out, extra):
    over = [f"DataLoader.Train.dataset.image_root={data}/", f"DataLoader.Train.dataset.cls_label_path={data}/train_list.txt",
            "DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=64", "DataLoader.Train.sampler.batch_size=8",
            "DataLoader.Train.sampler.num_instances=2", f"Global.output_dir={out}", "Global.eval_during_train=False",
            "Global.max_iters_per_epoch=1", "Global.image_shape=[3, 64, 64]", "Global.epochs=2",
            "Optimizer.lr.warmup_epoch=0", "Optimizer.lr.learning_rate=0.01", "Arch.Backbone.lr_mult=1.0",
            "Arch.Backbone.freeze_bn=False"]
    return load_config(RECIPE, over + extra, TRAIN_SCHEMA)


class _SizeProbe(HookBase):
    """The training pipeline's output (H, W) at the start of each epoch (after the schedule's hook)."""

    def __init__(self):
        self.sizes = {}

    def before_epoch(self, trainer):
        self.sizes[trainer.epoch + 1] = tuple(trainer.train_loader.dataset[(0, 0)][0].shape[1:])


def test_training_leaves_frozen_stages_unchanged_and_switches_size(tiny_set, tmp_path):
    """Two epochs of the real training loop (AdamW with weight decay, BatchNorm statistics updated where not
    frozen): the stem and stages 1-2 end as they started, weights and BatchNorm statistics alike, stage 3
    on moved; epoch 1 trained at the schedule's 48 px, epoch 2 at the pipeline's own 64."""
    cfg = _tiny_cfg(tiny_set, tmp_path, ["Arch.Backbone.freeze_stages=2", "Global.image_size_schedule=[[1, 48]]"])
    start = rec_task.build_model(cfg, class_num=4).state_dict()
    start = {k: v.numpy().copy() for k, v in start.items()}
    probe = _SizeProbe()
    rec_task.train(cfg, hooks=[probe])
    end = paddle.load(str(tmp_path / "RecModel" / "latest.pdparams"))
    moved = {k for k in start if not np.array_equal(start[k], np.asarray(end[k]))}
    frozen = [k for k in start if k.startswith(("backbone.stem.", "backbone.blocks.0.", "backbone.blocks.1.",
                                                "backbone.blocks.2."))]
    later = [k for k in start if k.startswith("backbone.blocks.3.")]
    assert frozen and not moved & set(frozen), sorted(moved & set(frozen))[:5]
    assert any(k.endswith(".weight") for k in moved & set(later)) and any(k.endswith("_mean") for k in moved & set(later))
    assert probe.sizes == {1: (48, 48), 2: (64, 64)}


def test_size_schedule_is_validated_naming_the_key():
    for bad, match in (("[[0, 128]]", r"image_size_schedule\[0\]\[0\] must be from 1"),
                       ("[[1, 128, 2]]", r"image_size_schedule\[0\] must be a list of 2"),
                       ("[1, 128]", r"image_size_schedule\[0\] must be list")):
        with pytest.raises(ConfigError, match=match):
            load_config(RECIPE, [f"Global.image_size_schedule={bad}"], TRAIN_SCHEMA)
    with pytest.raises(ConfigError, match=r"did you mean Global\.image_size_schedule"):
        load_config(RECIPE, ["Global.image_size_schedul=[[1, 128]]"], TRAIN_SCHEMA)


def test_size_schedule_epochs_and_a_pipeline_without_a_size():
    schedule = [[2, 112], [1, 128]]
    assert [size_at(schedule, e, (160, 160)) for e in (1, 2, 3, 4)] == [(112, 112), (112, 112), (128, 128),
                                                                         (160, 160)]
    ops = [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, {"RandFlipImage": {"flip_code": 1}},
           {"ToCHWImage": {}}]
    with pytest.raises(ConfigError, match=r"Global\.image_size_schedule needs .*RandCropImage"):
        size_op(build_transforms(ops, "x"))
