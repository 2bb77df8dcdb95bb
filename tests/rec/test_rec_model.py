"""RecModel from Arch: backbones by name, stop layer, neck/head widths, pretrained weights."""
import time

import numpy as np
import paddle
import pytest

from ppshitu.errors import ConfigError
import urllib.error

from ppshitu import weights
from ppshitu.weights import WeightsError
from ppshitu.rec.model import EmbeddingNet, build_rec_model

SHAPE = (3, 32, 32)


def _arch(backbone="MobileNetV1_x0_25", **extra):
    arch = {"name": "RecModel", "Backbone": {"name": backbone, "pretrained": False},
            "BackboneStopLayer": {"name": "flatten"}, "Neck": {"name": "FC", "class_num": 16},
            "Head": {"name": "ArcMargin", "class_num": 5, "margin": 0.2, "scale": 30}}
    arch.update(extra)
    return arch


@pytest.mark.parametrize("backbone, width", [("MobileNetV1_x0_25", 256), ("PPLCNet_x0_25", 1280),
                                             ("MobileNetV3_small_x0_35", 1280), ("PPLCNetV2_small", 1280)])
def test_backbones_by_name(backbone, width):
    model = build_rec_model(_arch(backbone, Neck=None, Head=None), SHAPE)
    model.eval()
    out = model(paddle.rand([2, *SHAPE]))
    assert out["features"].shape == [2, width] and model.embedding_size == width


def test_forward_outputs_and_normalized_embedding():
    model = build_rec_model(_arch(Neck=[{"FC": {"class_num": 16}}, {"BNNeck": {}}]), SHAPE)
    x, y = paddle.rand([4, *SHAPE]), paddle.to_tensor([0, 1, 2, 3])
    out = model(x, y)
    assert out["backbone"].shape == [4, 256] and out["features"].shape == [4, 16] and out["logits"].shape == [4, 5]
    model.eval()
    emb = EmbeddingNet(model)(x).numpy()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert model.embedding_size == 16


@pytest.mark.parametrize("change, match", [
    ({"Backbone": {"name": "MobileNetV1_x0_3"}}, r"Arch.Backbone.name: unknown backbone 'MobileNetV1_x0_3'.*did you mean"),
    ({"Backbone": {"name": "MobileNetV1", "scale": 0.5}}, r"MobileNetV1 takes no scale; use MobileNetV1_x0_25"),
    ({"BackboneStopLayer": {"name": "flaten"}}, r"no layer 'flaten' to stop after.*did you mean flatten"),
    ({"Neck": {"name": "FC", "embedding_size": 1024, "class_num": 8}},
     r"Arch.Neck.FC.embedding_size is 1024, but its input has 256 features"),
    ({"Neck": {"name": "FCC", "class_num": 8}}, r"unknown neck 'FCC'"),
    ({"Head": {"name": "ArcMargin", "class_num": 5, "margn": 0.1}}, r"Arch.Head.ArcMargin: unknown key 'margn'"),
    ({"Backbon": {}}, r"Arch: unknown keys \['Backbon'\]"),
])
def test_arch_config_errors(change, match):
    with pytest.raises(ConfigError, match=match):
        build_rec_model(_arch(**change), SHAPE)


def test_pretrained_true_offline_fails_fast_saying_how_to_pass_a_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PPSHITU_WEIGHTS_CACHE", str(tmp_path / "cache"))

    def offline(url, timeout):  # never the real network, whether or not one exists
        raise urllib.error.URLError("no route (test)")
    monkeypatch.setattr(weights.urllib.request, "urlopen", offline)
    start = time.monotonic()
    with pytest.raises(WeightsError, match=r"cannot download https://.*MobileNetV1_x0_25_pretrained.pdparams"
                                              r".*-o Arch.Backbone.pretrained=/path/to/MobileNetV1_x0_25_pre"):
        build_rec_model(_arch(Backbone={"name": "MobileNetV1_x0_25", "pretrained": True}), SHAPE)
    assert time.monotonic() - start < 30


def test_pretrained_local_path_loads_the_weights(tmp_path):
    paddle.seed(1)
    source = build_rec_model(_arch(Neck=None, Head=None, BackboneStopLayer=None), SHAPE)
    paddle.save(source.backbone.state_dict(), str(tmp_path / "MobileNetV1_x0_25_pretrained.pdparams"))
    paddle.seed(2)
    model = build_rec_model(_arch(Backbone={"name": "MobileNetV1_x0_25",
                                            "pretrained": str(tmp_path / "MobileNetV1_x0_25_pretrained")}), SHAPE)
    for key, value in model.backbone.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), source.backbone.state_dict()[key].numpy(), err_msg=key)
    with pytest.raises(WeightsError, match="not found"):
        build_rec_model(_arch(Backbone={"name": "MobileNetV1_x0_25", "pretrained": str(tmp_path / "nope")}), SHAPE)
    with pytest.raises(WeightsError, match=r"has shape .* do the weights fit this Arch"):
        build_rec_model(_arch(Backbone={"name": "MobileNetV1_x0_5",
                                        "pretrained": str(tmp_path / "MobileNetV1_x0_25_pretrained.pdparams")}), SHAPE)


def test_freeze_bn_keeps_the_backbone_statistics_in_training():
    arch = {"Backbone": {"name": "EfficientNetLite0", "freeze_bn": True}, "Neck": {"name": "FC", "class_num": 8}}
    model = build_rec_model(arch, (3, 64, 64))
    bn = [m for m in model.backbone.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)][0]
    before = bn._mean.numpy().copy()
    wrapper = paddle.nn.Sequential(model)  # a parent's train() only flips flags below it
    wrapper.train()
    model(paddle.rand([4, 3, 64, 64]) * 10)
    np.testing.assert_array_equal(bn._mean.numpy(), before)
    free = build_rec_model({**arch, "Backbone": {"name": "EfficientNetLite0"}}, (3, 64, 64))
    free.train()
    free(paddle.rand([4, 3, 64, 64]) * 10)
    fbn = [m for m in free.backbone.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)][0]
    assert not np.allclose(fbn._mean.numpy(), before)  # without freeze_bn the statistics move
