"""docs/ARCHITECTURE.md's "where to add" table, row by row: a toy of each kind (tests/core/toy_kinds/, one module
each, importing only the interface it implements) is registered through exactly the registration the row names,
in-process, and is then selected by its name in a config, through the code a real config goes through (the
schema's choices, the factory, the builder, the model builders, the commands). Fast: nothing is trained."""
import contextlib
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import yaml

from dataset.synthetic import make_recognition_set
from ppshitu.config import load_config
from ppshitu.errors import ConfigError
from ppshitu.schemas import INFER_SCHEMA
from tests.core.toy_kinds import backbone as toy_backbone
from tests.core.toy_kinds import index_method as toy_index_method
from tests.core.toy_kinds import rec_parts as toy_rec_parts
from tests.core.toy_kinds import runtime as toy_runtime
from tests.core.toy_kinds import store as toy_store
from tests.core.toy_kinds import task as toy_task
from tests.gallery.gallery_helpers import class_vectors
from tests.gallery.test_build_gallery import PixelEmbedder
from tests.gallery.test_build_gallery import config as gallery_config

ROOT = Path(__file__).resolve().parents[2]
INFER_CONFIG = ROOT / "configs" / "inference" / "inference_general.yaml"
BUILD_CONFIG = ROOT / "configs" / "inference" / "build_gallery.yaml"


@contextlib.contextmanager
def registered(registry, name, target, **tags):
    """`registry.add(name, target, **tags)` (the row's one line), forgotten afterwards."""
    registry.add(name, target, **tags)
    try:
        yield
    finally:
        registry.remove(name)


@contextlib.contextmanager
def decorated(registry, cls):
    """`@registry.register()` on `cls` (what the row's decorator does in the registry's own module)."""
    registry.register()(cls)
    try:
        yield
    finally:
        registry.remove(cls.__name__)


def test_index_method_a_class_and_one_line_in_INDEX_METHODS(tmp_path):
    from ppshitu.gallery import base
    from ppshitu.gallery.indexes import INDEX_METHODS

    v, labels = class_vectors(3, 10, seed=1)
    with registered(INDEX_METHODS, "ToyFlat", "tests.core.toy_kinds.index_method:ToyMethod"):
        # the schema's choices are the registry's names
        cfg = load_config(BUILD_CONFIG, ["IndexProcess.index_method=ToyFlat", f"IndexProcess.index_dir={tmp_path}/g"],
                          INFER_SCHEMA)
        faiss_gallery = base.create_gallery(cfg.IndexProcess, 32, vectors=v, labels=labels)
        assert isinstance(faiss_gallery.method, toy_index_method.ToyMethod)
        assert faiss_gallery.manifest["index_method"] == "ToyFlat"
        assert faiss_gallery.search(v, 1)[0] == [[x] for x in labels]
        milvus = base.create_gallery({**cfg.IndexProcess, "backend": "milvus", "uri": str(tmp_path / "g.db")}, 32,
                                     vectors=v, labels=labels)          # its own Milvus mapping: FLAT
        try:
            assert milvus.meta["milvus_index"]["index_type"] == "FLAT"
            assert milvus.search(v, 1)[0] == [[x] for x in labels]
        finally:
            milvus.close()
        with pytest.raises(ConfigError, match="did you mean ToyFlat"):
            load_config(BUILD_CONFIG, ["IndexProcess.index_method=ToyFalt"], INFER_SCHEMA)
    assert "ToyFlat" not in INDEX_METHODS.names()


def test_inference_runtime_a_file_and_one_line_in_RUNTIMES(tmp_path):
    from ppshitu.infer import factory
    from ppshitu.infer.runtime import RUNTIMES

    model = tmp_path / "toy_model"
    model.mkdir()
    (model / "inference.json").write_text("{}")
    (model / "inference.pdiparams").write_bytes(b"toy weights")
    overrides = ["Global.inference_backend=toy", f"Global.rec_inference_model_dir={model}",
                 "Global.enable_profile=True", "Global.cpu_num_threads=3"]
    with registered(RUNTIMES, "toy", "tests.core.toy_kinds.runtime:ToyRuntime"):
        cfg = load_config(INFER_CONFIG, overrides, INFER_SCHEMA)
        rec = factory.rec_predictor(cfg)                            # Global.inference_backend: toy
        assert isinstance(rec.runtime, toy_runtime.ToyRuntime)
        assert toy_runtime.ToyRuntime.made[-1] == {"model_dir": str(model), "cpu_threads": 3, "precision": "fp32",
                                                   "profile": True}  # its own Global key, through config_options
        out = rec.predict([np.full((40, 50, 3), 200, np.uint8), np.zeros((30, 30, 3), np.uint8)])
        assert out.shape == (2, rec.embedding_size) == (2, 192) and np.allclose(np.linalg.norm(out[0]), 1.0)
        with pytest.raises(ConfigError, match="did you mean toy"):
            load_config(INFER_CONFIG, ["Global.inference_backend=tyo"], INFER_SCHEMA)


def test_gallery_store_a_module_and_one_line_in_STORES(tmp_path):
    from ppshitu.gallery import base, builder
    from ppshitu.gallery.base import STORES

    root = tmp_path / "rec"
    make_recognition_set(root, num_classes=6, views_per_class=3, image_size=32, num_train_classes=2,
                         gallery_views=2, seed=0)
    (root / "all.txt").write_text((root / "gallery_list.txt").read_text())
    rec = PixelEmbedder()
    with registered(STORES, "toy", "tests.core.toy_kinds.store:ToyStore"):
        cfg = gallery_config(root, "toy-gallery", backend="toy")     # IndexProcess.backend: toy
        summary = builder.build_gallery(cfg, rec=rec)
        gallery = base.open_gallery(cfg.IndexProcess, model_fingerprint=rec.fingerprint)
        assert isinstance(gallery, toy_store.ToyStore) and len(gallery) == summary["count"] > 0
        rows = [line.split("\t") for line in (root / "all.txt").read_text().splitlines()]
        q = np.concatenate([rec.embed(root / p) for p, _ in rows])
        assert [row[0] for row in gallery.search(q, 1)[0]] == [lab for _, lab in rows]
        append = gallery_config(root, "toy-gallery", backend="toy", index_operation="append")
        again = builder.build_gallery(append, rec=rec)
        assert again["added"] == 0 and len(base.open_gallery(cfg.IndexProcess)) == summary["count"]
        with pytest.raises(ConfigError, match="did you mean toy"):
            gallery_config(root, "x", backend="tyo")
    toy_store.GALLERIES.clear()


def test_backbone_a_module_and_one_line_in_BACKBONES_for_rec_and_det():
    from ppshitu.det.model import build_model
    from ppshitu.engine.backbones import BACKBONES
    from ppshitu.rec.model import build_rec_model

    with registered(BACKBONES, "ToyNet", "tests.core.toy_kinds.backbone:TOY_NET", task="rec"), \
            registered(BACKBONES, "ToyDetNet", "tests.core.toy_kinds.backbone:TOY_DET_NET", task="det"):
        model = build_rec_model({"name": "RecModel", "Backbone": {"name": "ToyNet", "width": 12},
                                 "Neck": {"FC": {"class_num": 8}}}, image_shape=(3, 64, 64))  # Arch.Backbone.name
        assert isinstance(model.backbone, toy_backbone.ToyNet) and model.embedding_size == 8
        model.eval()
        assert model.embed(paddle.zeros([2, 3, 64, 64])).shape == [2, 8]
        with pytest.raises(ConfigError, match="ToyNet has no published weights"):
            build_rec_model({"Backbone": {"name": "ToyNet", "pretrained": True}}, image_shape=(3, 64, 64))
        with pytest.raises(ConfigError, match="'ToyDetNet' is registered for task det"):
            build_rec_model({"Backbone": {"name": "ToyDetNet"}}, image_shape=(3, 64, 64))
        arch = yaml.safe_load((ROOT / "configs" / "det" / "picodet_demo.yaml").read_text())["Arch"]
        arch["backbone"] = {"name": "ToyDetNet", "channels": [8, 16, 24]}  # Arch.backbone.name
        det = build_model(arch)
        assert isinstance(det.backbone, toy_backbone.ToyDetNet)
        det.eval()
        assert len(det.features(paddle.zeros([1, 3, 64, 64]))) == 4  # the neck took the toy's three maps
    assert "ToyNet" not in BACKBONES.names()


def test_loss_neck_and_pooling_a_class_and_their_registration(monkeypatch):
    from ppshitu.rec.losses import LOSSES, CombinedLoss
    from ppshitu.rec.model import build_rec_model
    from ppshitu.rec.necks import NECKS
    from ppshitu.rec.pooling import POOLINGS

    monkeypatch.setitem(POOLINGS, "toymax", toy_rec_parts.ToyPool)  # an entry in POOLINGS
    with decorated(LOSSES, toy_rec_parts.ToyLoss), decorated(NECKS, toy_rec_parts.ToyNeck):
        model = build_rec_model({"Backbone": {"name": "EfficientNetLite0", "pooling": "toymax"},   # the pooling
                                 "Neck": {"ToyNeck": {}}}, image_shape=(3, 64, 64))           # Arch.Neck
        assert isinstance(model.backbone.pool, toy_rec_parts.ToyPool) and model.embedding_size == 640
        loss = CombinedLoss([{"ToyLoss": {"weight": 0.5, "scale": 2.0}}])                   # Loss.Train
        outputs = model(paddle.rand([2, 3, 64, 64]))
        terms = loss(outputs, paddle.to_tensor([0, 1]))
        expected = float((outputs["features"] ** 2).sum(axis=1).mean())
        assert float(terms["ToyLoss"]) == pytest.approx(expected, rel=1e-5) == float(terms["loss"])


def test_other_components_a_class_and_the_decorator_of_their_registry():
    from ppshitu.rec.data.transforms import TRANSFORMS, build_transforms

    with decorated(TRANSFORMS, toy_rec_parts.ToyInvert):
        ops = build_transforms([{"ResizeImage": {"size": 4}}, {"ToyInvert": {"keep_alpha": False}}],
                               "DataLoader.Train.dataset.transform_ops")               # transform_ops
        out = ops(np.full((8, 8, 3), 10, np.uint8), np.random.default_rng(0))
        assert out.shape == (4, 4, 3) and (out == 245).all()
        with pytest.raises(ConfigError, match="did you mean ToyInvert"):
            build_transforms([{"ToyInvrt": {}}], "DataLoader.Train.dataset.transform_ops")


def test_training_task_a_module_and_one_line_in_TASKS(tmp_path):
    from ppshitu.commands import eval as eval_command
    from ppshitu.commands import export_model, train
    from ppshitu.tasks import TASKS

    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump({"Global": {"output_dir": str(tmp_path / "out")},
                                      "Arch": {"name": "ToyModel", "steps": 3}}))
    toy_task.CALLS.clear()
    with registered(TASKS, "ToyModel", "tests.core.toy_kinds.task:TASK"):   # Arch.name: ToyModel
        train.main(["-c", str(config)])
        eval_command.main(["-c", str(config)])
        export_model.main(["-c", str(config), "--out", str(tmp_path / "exported")])
        with pytest.raises(ConfigError, match="did you mean ToyModel"):
            train.main(["-c", str(config), "-o", "Arch.name=ToyModle"])
    assert toy_task.CALLS == [("train", "ToyModel", 3), ("evaluate", "ToyModel", None),
                              ("export", "ToyModel", str(tmp_path / "exported"))]


def test_trainer_behaviour_a_hook_passed_in_hooks(tmp_path):
    from ppshitu.engine.trainer import Trainer
    from tests.core.toy_kinds.hook import ToyHook

    class OneBatch(list):
        batch_sampler = None

    model = paddle.nn.Linear(4, 2)
    hook = ToyHook()
    batches = OneBatch([(paddle.rand([3, 4]), paddle.to_tensor([0, 1, 0]))])
    trainer = Trainer(model, lambda m, b: {"loss": paddle.nn.functional.cross_entropy(m(b[0]), b[1])},
                      paddle.optimizer.SGD(0.1, parameters=model.parameters()), batches, epochs=1,
                      output_dir=str(tmp_path), hooks=[hook], show_progress=False)
    trainer.train()
    assert hook.events == ["before_train", "after_step", "after_epoch"]


def test_cli_command_a_module_and_a_line_in_COMMANDS(monkeypatch, capsys):
    from ppshitu import cli_main
    from ppshitu.commands import COMMANDS
    from tests.core.toy_kinds import command as toy_command

    monkeypatch.setitem(sys.modules, "ppshitu.commands.toy", toy_command)   # (ppshitu/commands/toy.py)
    monkeypatch.setitem(COMMANDS, "toy", ("toy", "tools/toy.py", "a toy command"))
    assert "a toy command" in cli_main.usage()
    assert cli_main.main(["toy", "hello"]) == 0 and toy_command.RUNS[-1] == "hello"
