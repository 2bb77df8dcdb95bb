"""The text-image task end to end on a tiny captioned set: tools/train.py's task trains (loss falls, epoch 0 is
the untrained model), the export's two ONNX files compute what the Paddle towers do (run here on OpenVINO), and
the export imports through tools/import_model.py into a model directory that indexes a folder and answers
tools/search.py --text, and the service's POST /search {"text"}, with the image the Paddle model ranks first."""
import json
from pathlib import Path

import numpy as np
import paddle
import pytest

from dataset.captions import make_caption_set
from ppshitu.config import load_config
from ppshitu.schemas import TRAIN_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "clip" / "clip_effnet_lite0_demo.yaml"
SIZE = 64


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config, history) of a few steps on 24 training combinations."""
    tmp = tmp_path_factory.mktemp("clip")
    data = tmp / "data"
    make_caption_set(data, views_per_combo=2, heldout_views=1, image_size=SIZE, max_train_combos=24,
                     max_heldout_combos=6)
    resize = f"[{{ResizeImage: {{size: {SIZE}}}}}, {{NormalizeImage: {{scale: 0.00392156862745098, mean: [0.498, " \
             f"0.498, 0.498], std: [0.502, 0.502, 0.502], order: hwc}}}}, {{ToCHWImage: {{}}}}]"
    overrides = [f"Global.output_dir={tmp}/out", f"Global.save_inference_dir={tmp}/export", "Global.epochs=4",
                 "Global.eval_interval=4", f"Global.image_shape=[3, {SIZE}, {SIZE}]", "Global.print_batch_step=100",
                 f"Arch.TextTower.tokenizer={data}/tokenizer.json", "Arch.TextTower.width=32",
                 "Arch.ImageTower.hidden=64", "Arch.embedding_size=32", "Optimizer.lr.learning_rate=0.005",
                 "Optimizer.lr.warmup_epoch=0",
                 f"DataLoader.Train.dataset.list_path={data}/train.jsonl", "DataLoader.Train.sampler.batch_size=16",
                 f"DataLoader.Train.dataset.transform_ops={resize}",
                 f"DataLoader.Eval.dataset.list_path={data}/heldout.jsonl",
                 f"DataLoader.Eval.dataset.transform_ops={resize}"]
    cfg = load_config(RECIPE, overrides, TRAIN_SCHEMA)
    from ppshitu.tasks import task_for

    history = task_for(cfg).train(cfg)
    return cfg, history, tmp, data


def test_training_lowers_the_loss_and_records_the_untrained_model(trained):
    _, history, tmp, _ = trained
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.9, losses
    assert history[0]["epoch"] == 0 and "recall1" in history[0]  # the untrained model's held-out recall
    assert 0 < history[0]["chance_recall1"] < 1
    assert (tmp / "out" / "best_model.pdparams").is_file()


@pytest.fixture(scope="module")
def exported(trained):
    cfg, _, tmp, _ = trained
    from ppshitu.tasks import task_for

    cfg.Global.pretrained_model = str(tmp / "out" / "latest")
    task_for(cfg).export(cfg, str(tmp / "export"))
    return cfg, tmp / "export"


def _paddle_model(cfg):
    from ppshitu.clip.task import build_model

    model, tok = build_model(cfg)
    model.eval()
    return model, tok


def test_onnx_towers_match_paddle(exported, trained):
    import openvino as ov

    cfg, out = exported
    data = trained[3]
    model, tok = _paddle_model(cfg)
    rows = [json.loads(line) for line in (data / "heldout.jsonl").read_text().splitlines()]
    from ppshitu.clip.data import CaptionList

    images = CaptionList(cfg.DataLoader.Eval, "DataLoader.Eval").images(range(len(rows)))
    ids = tok.encode([r["captions"][0] for r in rows] + ["a very long caption " * 5]).ids
    core = ov.Core()
    for name, array, tower in (("image_encoder.onnx", images, model.image), ("text_encoder.onnx", ids, model.text)):
        compiled = core.compile_model(str(out / name), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        got = compiled([array])[compiled.output(0)]
        with paddle.no_grad():
            want = tower(paddle.to_tensor(array)).numpy()
        cos = np.sum(got * want, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        assert got.shape == want.shape and cos.min() > 0.999, (name, cos)
    facts = (out / "clip_model.yml").read_text()
    assert "context_length: 16" in facts and (out / "tokenizer.json").is_file()


def test_import_index_and_search_by_text(exported, trained, tmp_path, capsys):
    import yaml

    from ppshitu.commands import import_model, index_folder, search

    cfg, out = exported
    data = trained[3]
    facts = yaml.safe_load((out / "clip_model.yml").read_text())
    import_model.main(facts["import_args"] + ["--out", str(tmp_path / "model")])
    infer = ROOT / "configs" / "inference" / "inference_general.yaml"
    common = ["-c", str(infer), "-o", f"Global.rec_inference_model_dir={tmp_path / 'model'}",
              "-o", "Global.inference_backend=openvino", "--index", str(tmp_path / "index")]
    index_folder.main(common + ["--dir", str(data / "images" / "heldout")])
    rows = [json.loads(line) for line in (data / "heldout.jsonl").read_text().splitlines()]
    query = rows[0]["captions"][0]
    capsys.readouterr()
    search.main(common + ["--text", query, "--k", "3", "--json"])
    printed = capsys.readouterr().out
    found = json.loads(printed[printed.index("{"):])["results"]
    # the Paddle model's own ranking of the same images for the same sentence
    model, tok = _paddle_model(cfg)
    from ppshitu.clip.data import CaptionList

    listed = CaptionList(cfg.DataLoader.Eval, "DataLoader.Eval")
    with paddle.no_grad():
        text = model.text(paddle.to_tensor(tok.encode([query]).ids)).numpy()
        images = model.image(paddle.to_tensor(listed.images(range(len(listed))))).numpy()
    best = Path(listed.paths[int(np.argmax(images @ text[0]))]).name
    assert Path(str(found[0].get("path") or found[0].get("image"))).name == best, found
    assert _service_search(tmp_path, query)[0]["name"] == best


def _service_search(tmp_path, query):
    """The service's POST /search with a JSON text query, on the gallery indexed above (in process)."""
    from fastapi.testclient import TestClient

    from ppshitu.schemas import INFER_SCHEMA
    from ppshitu.serving.app import create_app
    from ppshitu.serving.service import Service
    from ppshitu.serving.settings import Settings

    cfg = load_config(ROOT / "configs" / "inference" / "inference_general.yaml",
                      [f"Global.rec_inference_model_dir={tmp_path / 'model'}", "Global.det_inference_model_dir=",
                       f"IndexProcess.index_dir={tmp_path / 'index'}", f"Global.output_dir={tmp_path}",
                       "IndexProcess.use_det=False", "Global.cpu_num_threads=1"], INFER_SCHEMA)
    service = Service.from_config(cfg, Settings(workers=1)).start()
    try:
        with TestClient(create_app(service), base_url="http://127.0.0.1") as client:
            r = client.post("/search?k=3", json={"text": query})
    finally:
        service.stop()
    assert r.status_code == 200 and r.json()["text"] == query, r.text
    return r.json()["results"]
