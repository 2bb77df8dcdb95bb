"""EfficientNet-Lite with ImageNet weights read without torch: the conversion is proven by real photos
(scikit-image's cat and espresso) being classified right, and by a stride-ignoring read failing."""
import os
import pickle
import re

import cv2
import numpy as np
import paddle
import pytest
import skimage.data

from ppshitu.errors import ConfigError
from ppshitu.rec.backbones.efficientnet_lite import (PREPROCESS, ConvBN, EfficientNetLite, EfficientNetLite0,
                                                     EfficientNetWeightsError, convert_state_dict,
                                                     load_imagenet_weights, package_weights)
from ppshitu.rec.pooling import AvgPool, GeM, build_pooling
from ppshitu.weights.torch_legacy import MAGIC_NUMBER, PROTOCOL_VERSION, WeightsFormatError, load_torch_legacy

CATS = list(range(281, 286))      # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = [967, 968, 504]          # espresso, cup, coffee mug


def _photos(variant):
    """chelsea (a cat) and coffee (an espresso) as the NCHW batch the variant's weights expect."""
    pre = PREPROCESS[variant]
    batch = []
    for image in (skimage.data.chelsea(), skimage.data.coffee()):  # RGB uint8
        image = cv2.resize(image, tuple(pre["input_size"][::-1]), interpolation=cv2.INTER_LINEAR)
        image = (image * pre["scale"] - np.array(pre["mean"])) / np.array(pre["std"])
        batch.append(image.transpose(2, 0, 1))
    return paddle.to_tensor(np.stack(batch).astype("float32"))


def _class_mass(net, variant):
    """Softmax probability on the cat classes for chelsea, on the coffee classes for coffee."""
    net.eval()
    with paddle.no_grad():
        prob = paddle.nn.functional.softmax(net(_photos(variant)), axis=1).numpy()
    return prob[0, CATS].sum(), prob[1, COFFEE].sum()


@pytest.fixture(scope="module")
def lite0_path():
    return package_weights("lite0")


def test_lite0_classifies_imagenet_photos(lite0_path):
    net = EfficientNetLite0(class_num=1000)
    assert load_imagenet_weights(net) == lite0_path
    cat, coffee = _class_mass(net, "lite0")
    assert cat >= 0.8 and coffee >= 0.8, (cat, coffee)


def test_reading_without_strides_scrambles_the_weights(lite0_path):
    # the file stores many tensors in TensorFlow's memory order: contiguous reads give confident nonsense
    net = EfficientNetLite0(class_num=1000)
    net.set_state_dict(convert_state_dict(load_torch_legacy(lite0_path, honour_strides=False), net))
    cat, _ = _class_mass(net, "lite0")
    assert cat < 0.5, cat


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_larger_variants_load_and_classify(variant):
    net = EfficientNetLite(variant, class_num=1000)
    load_imagenet_weights(net)  # every tensor filled, every shape exact, or it raises
    cat, coffee = _class_mass(net, variant)
    assert cat >= 0.5 and coffee >= 0.5, (cat, coffee)


def test_weights_of_another_variant_are_refused(lite0_path):
    with pytest.raises(EfficientNetWeightsError, match="Lite1"):
        convert_state_dict(load_torch_legacy(lite0_path), EfficientNetLite("lite1"))


def test_strided_convs_pad_like_tensorflow():
    # TF "SAME": at stride 2 on an even size the single pixel of padding goes bottom/right
    conv = ConvBN(2, 2, 3, stride=2).conv
    x = paddle.rand([1, 2, 8, 8])
    explicit = paddle.nn.functional.conv2d(paddle.nn.functional.pad(x, [0, 1, 0, 1]), conv.weight, stride=2)
    np.testing.assert_allclose(conv(x).numpy(), explicit.numpy(), rtol=1e-5, atol=1e-6)


def _legacy_header(f):
    for obj in (MAGIC_NUMBER, PROTOCOL_VERSION, {"protocol_version": PROTOCOL_VERSION, "little_endian": True}):
        pickle.dump(obj, f, protocol=2)


def test_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        _legacy_header(f)
        f.write(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")  # os.system("touch ...")
    with pytest.raises(WeightsFormatError, match=r"os\.system") as err:
        load_torch_legacy(path)
    assert str(path) in str(err.value) and not marker.exists()


def test_truncated_and_foreign_files_are_format_errors(tmp_path, lite0_path):
    truncated = tmp_path / "truncated.pth"
    with open(lite0_path, "rb") as f:
        truncated.write_bytes(f.read(1_000_000))
    not_torch = tmp_path / "other.pth"
    with open(not_torch, "wb") as f:
        pickle.dump({"a": 1}, f)
    for path in (truncated, not_torch):
        with pytest.raises(WeightsFormatError, match=re.escape(str(path))):
            load_torch_legacy(path)


def test_gem_with_p_1_is_average_pooling_and_learns_p():
    x = paddle.rand([2, 3, 5, 4]) + 0.1
    gem = GeM(p=1.0)
    np.testing.assert_allclose(gem(x).numpy(), AvgPool()(x).numpy(), rtol=1e-5)
    gem3 = GeM()
    gem3(x).sum().backward()
    assert gem3.p.shape == [1] and gem3.p.grad is not None and float(gem3.p.grad.abs().sum()) > 0
    with pytest.raises(ConfigError, match="gem"):
        build_pooling("gme")


def test_exported_lite0_matches_dygraph(tmp_path):
    net = EfficientNetLite0(pooling="gem")
    load_imagenet_weights(net)  # no classifier: the ImageNet `_fc` is skipped
    net.eval()
    x = np.random.RandomState(0).uniform(-1, 1, (2, 3, 224, 224)).astype("float32")
    with paddle.no_grad():
        expected = net(paddle.to_tensor(x)).numpy()
    assert expected.shape == (2, 1280)

    spec = [paddle.static.InputSpec([None, 3, 224, 224], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), str(tmp_path / "inference"))
    config = paddle.inference.Config(str(tmp_path / "inference.json"), str(tmp_path / "inference.pdiparams"))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    predictor = paddle.inference.create_predictor(config)
    feed = predictor.get_input_handle(predictor.get_input_names()[0])
    feed.reshape(x.shape)
    feed.copy_from_cpu(x)
    predictor.run()
    got = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    np.testing.assert_allclose(got, expected, atol=1e-4)
