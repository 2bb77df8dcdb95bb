"""Round 3c probes of the tools, each refused at its cause as one line (ppshitu/cli.py run_main, exit 2):

1. export_model --out DIR holding a user's inference.yml / inference.json (or an existing model without
   --overwrite) replaced them: export and quantize share infer/spec.py check_model_out_dir.
2. train into an output folder holding a user's RecModel/best_model.pdparams replaced it: checkpoint writes
   go through the folder's OutputGuard; training refuses to start, unless Global.checkpoints resumes there.
3. migrate_gallery --sample -5 (a numpy traceback after writing) / --sample 0 (nothing verified) accepted.
4. convert_ppshitu_index: --delimiter "" (ValueError), a deeply nested id_map.pkl (RecursionError), one image
   path under 10 labels (silently 1 item), vector.index -> /dev/zero ("missing").
5. gallery_doctor --root /nonexistent (or a file) accepted.
6. similarity a.jpg a.jpg (or a byte-identical copy) said "the same picture, edited": "identical files".
7. eval_system --scenes listing the same image twice scored it twice.
"""
import os
import pickle
import shutil

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REC_CONFIG = os.path.join(ROOT, "configs", "rec", "demo_rec.yaml")
INFER_CONFIG = os.path.join(ROOT, "configs", "inference", "inference_general.yaml")
REC_MODEL = os.path.join(ROOT, "models", "demo", "rec")


def refused(cli, argv, capsys, *names):
    """cli(argv) exits 2 with one `error:` line naming each of `names`; returns that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err[-2000:]
    for name in names:
        assert str(name) in lines[0], f"{name!r} not in {lines[0]}"
    return lines[0]


# 1 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["inference.json", "inference.yml", "notes.txt"])
def test_export_refuses_a_folder_that_is_not_a_model_directory(tmp_path, capsys, name):
    from ppshitu.commands.export_model import cli

    out = tmp_path / "u"
    out.mkdir()
    (out / name).write_text("the user's own file\n")
    for extra in ([], ["--overwrite"]):
        refused(cli, ["-c", REC_CONFIG, "--out", str(out), *extra], capsys, out)
        assert (out / name).read_text() == "the user's own file\n"


def test_export_replaces_an_existing_model_only_with_overwrite(tmp_path, capsys):
    from ppshitu.commands.export_model import cli
    from ppshitu.errors import ConfigError
    from ppshitu.infer.spec import check_model_out_dir

    out = tmp_path / "model"
    shutil.copytree(REC_MODEL, out)
    line = refused(cli, ["-c", REC_CONFIG, "--out", str(out)], capsys, out, "--overwrite")
    assert "already holds a model" in line
    check_model_out_dir(str(out), overwrite=True)        # a ppshitu model directory: replaced with --overwrite
    check_model_out_dir(str(tmp_path / "new"))           # new or empty: fine
    (tmp_path / "empty").mkdir()
    check_model_out_dir(str(tmp_path / "empty"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        check_model_out_dir(str(tmp_path / "file"), overwrite=True)


def test_quantize_shares_the_model_directory_rule():
    import inspect

    from ppshitu.infer import quantize

    src = inspect.getsource(quantize.quantize_model)
    assert "check_model_out_dir(" in src and "os.listdir(out_dir)" not in src


# 2 -------------------------------------------------------------------------------------------------
def _tiny_rec_overrides(data, out):
    o = [f"Global.output_dir={out}", "Global.epochs=1", "Global.max_iters_per_epoch=1", "Global.eval_during_train=False",
         "DataLoader.Train.sampler.batch_size=8", f"DataLoader.Train.dataset.image_root={data}",
         f"DataLoader.Train.dataset.cls_label_path={data}/train_list.txt"]
    for part in ("Query", "Gallery"):
        o += [f"DataLoader.Eval.{part}.dataset.image_root={data}",
              f"DataLoader.Eval.{part}.dataset.cls_label_path={data}/test_list.txt"]
    return [a for x in o for a in ("-o", x)]


@pytest.fixture(scope="module")
def tiny_rec(tmp_path_factory):
    from dataset.synthetic import make_recognition_set

    root = tmp_path_factory.mktemp("tiny_rec")
    make_recognition_set(root, num_classes=6, views_per_class=3, image_size=64, num_train_classes=4, seed=1)
    return root


def test_train_refuses_to_replace_a_users_checkpoint_file(tiny_rec, tmp_path, capsys):
    from ppshitu.commands.train import cli

    out = tmp_path / "u"
    (out / "RecModel").mkdir(parents=True)
    user = out / "RecModel" / "best_model.pdparams"
    user.write_bytes(b"the user's weights")
    refused(cli, ["-c", REC_CONFIG, *_tiny_rec_overrides(tiny_rec, out)], capsys, user)
    assert user.read_bytes() == b"the user's weights"


def test_train_reruns_and_resumes_into_its_own_folder(tiny_rec, tmp_path, capsys):
    from ppshitu.commands.train import cli
    from ppshitu.utils.outputs import MANIFEST

    out = tmp_path / "run"
    args = ["-c", REC_CONFIG, *_tiny_rec_overrides(tiny_rec, out)]
    cli(args)
    rec = out / "RecModel"
    assert (rec / "latest.pdparams").is_file() and (rec / MANIFEST).is_file()
    cli(args)  # its own files: replaced
    # a checkpoint written before the record existed: resuming from it is the user's word that it is the run's
    os.remove(rec / MANIFEST)
    cli(args + ["-o", f"Global.checkpoints={rec}/latest", "-o", "Global.epochs=2"])
    import json
    assert json.loads((rec / "latest.pdstates").read_text())["epoch"] == 2


# 3 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", ["-5", "0"])
def test_migrate_gallery_sample_must_be_at_least_one(tmp_path, capsys, sample):
    from ppshitu.commands.migrate_gallery import cli

    dst = tmp_path / "dst"
    refused(cli, [str(tmp_path / "src"), str(dst), "--sample", sample], capsys, "--sample")
    assert not dst.exists()


# 4 -------------------------------------------------------------------------------------------------
def _pps_index(folder, id_map_bytes, n=1, d=4):
    import faiss

    folder.mkdir(exist_ok=True)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    index.add_with_ids(np.eye(n, d, dtype=np.float32) + 0.1, np.arange(n, dtype=np.int64))
    faiss.write_index(index, str(folder / "vector.index"))
    (folder / "id_map.pkl").write_bytes(id_map_bytes)
    return folder


def _deep_pickle(depth=5000):
    parts = [b"\x80\x02}K\x00"] + [b"}K\x00"] * depth + [b"X\x01\x00\x00\x00x"] + [b"s"] * (depth + 1) + [b"."]
    return b"".join(parts)


def test_convert_ppshitu_index_refusals(tmp_path, capsys):
    from ppshitu.commands.convert_ppshitu_index import cli

    good = _pps_index(tmp_path / "good", pickle.dumps({0: "a.jpg\tcat"}))
    for bad in ("", "\\n"):
        refused(cli, [str(good), str(tmp_path / "o1"), "--delimiter", bad], capsys, "--delimiter")
    deep = _pps_index(tmp_path / "deep", _deep_pickle())
    refused(cli, [str(deep), str(tmp_path / "o2")], capsys, deep / "id_map.pkl")
    conflict = _pps_index(tmp_path / "conflict", pickle.dumps({i: f"same.jpg\tlabel{i}" for i in range(10)}), n=10)
    refused(cli, [str(conflict), str(tmp_path / "o3")], capsys, "'same.jpg'", "'label0'", "'label4'")
    assert not (tmp_path / "o3").exists()
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "vector.index").symlink_to("/dev/zero")
    line = refused(cli, [str(dev), str(tmp_path / "o4")], capsys, dev / "vector.index", "not a regular file")
    assert "missing" not in line
    cli([str(good), str(tmp_path / "o5")])  # (the well-formed one still imports)


# 5 -------------------------------------------------------------------------------------------------
def test_gallery_doctor_refuses_a_root_that_is_not_a_directory(tmp_path, capsys):
    from ppshitu.commands.gallery_doctor import cli

    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for root in (tmp_path / "nonexistent", a_file, fifo):
        refused(cli, ["-c", INFER_CONFIG, "--index", str(tmp_path / "g"), "--out", str(tmp_path / "o"),
                      "--root", str(root)], capsys, "--root", root)


# 6 -------------------------------------------------------------------------------------------------
def test_similarity_of_identical_files_says_identical_files(tmp_path, capsys):
    from PIL import Image

    from ppshitu.commands.similarity import main

    rng = np.random.default_rng(0)
    a = tmp_path / "a.jpg"
    Image.fromarray((rng.random((96, 96, 3)) * 255).astype(np.uint8)).resize((160, 160)).save(a, quality=90)
    b = tmp_path / "b.jpg"
    shutil.copyfile(a, b)
    base = ["-c", INFER_CONFIG, "-o", f"Global.rec_inference_model_dir={REC_MODEL}", "-o", "Global.cpu_num_threads=2"]
    for pair in ((a, a), (a, b)):
        out = main(base + [str(p) for p in pair])
        assert out["verdict"] == "identical files"
        assert "verdict: identical files" in capsys.readouterr().out


# 7 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("images, named", [
    ([{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "a.jpg"}], "image id 1"),
    ([{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "./a.jpg"}], "'./a.jpg'"),
])
def test_scenes_listing_an_image_twice_are_refused(tmp_path, images, named):
    import json

    from ppshitu.evaluation.system_metrics import ScenesError, load_coco_scenes

    path = tmp_path / "scenes.json"
    path.write_text(json.dumps({"images": images, "annotations": []}))
    with pytest.raises(ScenesError, match="listed twice") as e:
        load_coco_scenes(str(path))
    assert named in str(e.value) and str(path) in str(e.value)
