import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ppshitu.errors import ConfigError
from ppshitu.infer.runtime import ModelDirError
from ppshitu.infer.preprocess import RecPreprocess
from ppshitu.infer.rec import RecPredictor, l2_normalize
from ppshitu.infer.spec import write_spec

TINY_NET = textwrap.dedent("""
    import sys, paddle
    class Tiny(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 8, 3, stride=2)
            self.pool = paddle.nn.AdaptiveAvgPool2D(1)
            self.fc = paddle.nn.Linear(8, 16)
        def forward(self, x):  # conv/pool/flatten/linear only: these trace in the legacy format too
            return self.fc(paddle.flatten(self.pool(paddle.nn.functional.relu(self.conv(x))), 1))
    paddle.seed(0)
    net = Tiny()
    net.eval()
    spec = [paddle.static.InputSpec([None, 3, 32, 48], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), sys.argv[1] + "/inference")
""")
SPEC = dict(model_type="rec", input_size=[32, 48], interpolation="bilinear", scale=1 / 255.0,
            mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], embedding_size=16)


def _export(out_dir, legacy):
    os.makedirs(out_dir, exist_ok=True)
    script = os.path.join(out_dir, "..", "tiny_net.py")  # to_static reads the source: no `python -c`
    with open(script, "w") as f:
        f.write(TINY_NET)
    env = dict(os.environ, FLAGS_enable_pir_api="0" if legacy else "1")
    proc = subprocess.run([sys.executable, script, str(out_dir)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return str(out_dir)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec_models")
    pir, legacy = _export(root / "pir", False), _export(root / "legacy", True)
    write_spec(pir, format="pir", **SPEC)
    return {"pir": pir, "legacy": legacy}


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(20, 90)), int(rng.integers(20, 90)), 3), dtype=np.uint8)
            for _ in range(n)]


def test_embeddings_are_normalized_and_batching_changes_nothing(models):
    rec = RecPredictor(models["pir"], cpu_threads=1, max_batch_size=3)
    assert rec.embedding_size == 16 and len(rec.fingerprint) == 16
    imgs = _images(7)
    batch = rec.predict(imgs)
    assert batch.shape == (7, 16) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([rec.predict(im) for im in imgs])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-4)
    assert rec.predict([]).shape == (0, 16)


def test_legacy_pdmodel_loads_and_matches_pir(models):
    """PP-ShiTu's published models are inference.pdmodel: they must load in a Paddle 3 process."""
    assert os.path.isfile(os.path.join(models["legacy"], "inference.pdmodel"))
    ops = [{"ResizeImage": {"size": [48, 32]}},  # PaddleClas: [w, h]
           {"NormalizeImage": {"scale": "1.0/255.0", "mean": SPEC["mean"], "std": SPEC["std"], "order": "hwc"}},
           {"ToCHWImage": None}]
    legacy = RecPredictor(models["legacy"], cpu_threads=1, preprocess=ops)
    pir = RecPredictor(models["pir"], cpu_threads=1)
    assert legacy.embedding_size == 16
    imgs = _images(4, seed=1)
    np.testing.assert_allclose(legacy.predict(imgs), pir.predict(imgs), atol=1e-4)


def test_mkldnn_off_gives_the_same_vectors(models):
    imgs = _images(3, seed=2)
    on = RecPredictor(models["pir"], cpu_threads=1, enable_mkldnn=True).predict(imgs)
    off = RecPredictor(models["pir"], cpu_threads=1, enable_mkldnn=False).predict(imgs)
    np.testing.assert_allclose(on, off, atol=1e-4)


def test_zero_vector_stays_zero_without_nan():
    out = l2_normalize(np.array([[0.0, 0.0], [3.0, 4.0]], np.float32))
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out, [[0, 0], [0.6, 0.8]], atol=1e-6)


def test_matches_paddleclas_reference_preprocessing():
    """Same pixels in as PP-ShiTu's own deploy/python preprocess ops (read, not run, on the query path)."""
    from paddleclas.deploy.python import preprocess as deploy
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (57, 83, 3), dtype=np.uint8)
    ops = [{"ResizeImage": {"size": 224, "interpolation": "bilinear", "backend": "cv2"}},
           {"NormalizeImage": {"scale": 0.00392157, "mean": [0.485, 0.456, 0.406],
                               "std": [0.229, 0.224, 0.225], "order": ""}},
           {"ToCHWImage": None}]
    ours = RecPreprocess.from_transform_ops(ops)(img)
    ref = img
    for op in (deploy.ResizeImage(size=224, interpolation="bilinear", backend="cv2"),
               deploy.NormalizeImage(scale=0.00392157, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                                     order=""),
               deploy.ToCHWImage()):
        ref = op(ref)
    assert ours.shape == ref.shape == (3, 224, 224)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_clear_errors(tmp_path, models):
    with pytest.raises(ModelDirError, match="no inference model found"):
        RecPredictor(str(tmp_path))
    with pytest.raises(ConfigError, match="RecPreProcess.transform_ops must say"):
        RecPredictor(models["legacy"])
    with pytest.raises(ConfigError, match=r"unknown key 'sise'.*did you mean size"):
        RecPreprocess.from_transform_ops([{"ResizeImage": {"sise": 224}}])
    with pytest.raises(ConfigError, match="unsupported rec preprocess op"):
        RecPreprocess.from_transform_ops([{"ResizeImage": {"size": 224}}, {"Blur": {}}])
