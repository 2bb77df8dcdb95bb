"""Pretrained weights: PaddleClas's PP-LCNet ImageNet file fits the detector's backbone;
whole-detector files load; URLs are cached and fail offline with a clear message."""
from pathlib import Path

import numpy as np
import paddle
import pytest

from ppshitu.config import load_config
from ppshitu import weights
from ppshitu.det import task
from ppshitu.schemas import TRAIN_SCHEMA

CONFIG = Path(__file__).resolve().parents[2] / "configs/det/picodet_demo.yaml"


def _cfg(*overrides):
    return load_config(CONFIG, list(overrides), TRAIN_SCHEMA)


def test_paddleclas_lcnet_imagenet_weights_load_into_the_backbone(tmp_path):
    from paddleclas.ppcls.arch.backbone.legendary_models.pp_lcnet import PPLCNet_x0_35

    paddle.seed(123)
    imagenet = PPLCNet_x0_35(pretrained=False).state_dict()  # the published file's keys, incl. fc
    path = tmp_path / "PPLCNet_x0_35_pretrained.pdparams"
    paddle.save(imagenet, str(path))
    model = task.build_model(_cfg(f"Arch.pretrained={path}"), for_training=True)
    backbone = model.backbone.state_dict()
    assert len(backbone) == len(imagenet) - 3  # everything but last_conv and the classifier
    for key, value in backbone.items():
        np.testing.assert_array_equal(value.numpy(), imagenet[key].numpy(), err_msg=key)


def test_whole_detector_weights_load_and_mismatches_are_named(tmp_path):
    source = task.build_model(_cfg("Global.seed=1"))
    path = tmp_path / "det.pdparams"
    paddle.save(source.state_dict(), str(path))
    model = task.build_model(_cfg("Global.seed=2", f"Global.pretrained_model={tmp_path / 'det'}"), for_training=True)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), source.state_dict()[key].numpy(), err_msg=key)
    with pytest.raises(weights.WeightsError, match=r"Global.pretrained_model: .*det.pdparams: .* has shape"):
        task.build_model(_cfg("Arch.backbone.scale=0.5", f"Global.pretrained_model={path}"), for_training=True)
    with pytest.raises(weights.WeightsError, match="weights not found: .*nope"):
        task.build_model(_cfg(f"Global.pretrained_model={tmp_path / 'nope'}"), for_training=True)


def test_urls_are_cached_and_offline_failures_say_where_to_put_the_file(tmp_path):
    cached = tmp_path / "PPLCNet_x0_35_pretrained.pdparams"
    cached.write_bytes(b"x")
    url = "http://127.0.0.1:9/weights/PPLCNet_x0_35_pretrained.pdparams"  # port 9: nothing listens
    assert weights.download(url, directory=str(tmp_path)) == str(cached)
    with pytest.raises(weights.WeightsError) as e:
        weights.download(url.replace("x0_35", "x0_5"), "Arch.pretrained", directory=str(tmp_path))
    message = str(e.value)
    assert "Arch.pretrained: cannot download http://127.0.0.1:9/" in message and "Offline?" in message
    assert str(tmp_path / "PPLCNet_x0_5_pretrained.pdparams") in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PPLCNet_x0_35_pretrained.pdparams"]  # no partial file
