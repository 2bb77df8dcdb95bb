"""The README's Python API snippet runs as written: in a scratch folder laid out like the checkout (links to its
configs/ and the demo models), on a tiny generated gallery (gallery/labels.txt, more.txt, old.txt) and a query
photo (photo.jpg) of the appended class; and `import ppshitu` stays cheap (nothing heavy until a name is used)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_python():
    """The README's one ```python block."""
    blocks = re.findall(r"^```python\n(.*?)^```$", (ROOT / "README.md").read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) == 1, f"README.md: {len(blocks)} python blocks, expected the API snippet alone"
    return blocks[0]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """What the snippet reads, where it reads it; returns (folder, the class names listed in each file)."""
    from dataset.synthetic import make_recognition_set

    root = tmp_path_factory.mktemp("api")
    for name in ("configs", "models"):
        (root / name).symlink_to(ROOT / name, target_is_directory=True)
    gallery = root / "gallery"
    make_recognition_set(gallery, num_classes=5, views_per_class=3, image_size=96, num_train_classes=1,
                         gallery_views=2, seed=3)
    rows = [line.split("\t") for line in (gallery / "gallery_list.txt").read_text().splitlines()]  # 4 x 2 views
    names = sorted({name for _, name in rows})
    first, appended = names[:3], names[3]
    (gallery / "labels.txt").write_text("".join(f"{p}\t{n}\n" for p, n in rows if n in first))
    (gallery / "more.txt").write_text("".join(f"{p}\t{n}\n" for p, n in rows if n == appended))
    removed = next(row for row in rows if row[1] == first[0])
    (gallery / "old.txt").write_text(f"{removed[0]}\t{removed[1]}\n")  # one image of the first class
    query = next(p for p, n in (line.split("\t") for line in (gallery / "query_list.txt").read_text().splitlines())
                 if n == appended)
    shutil.copy(gallery / query, root / "photo.jpg")  # a view of the appended class the gallery does not hold
    return root, first, appended, removed


def test_readme_python_api_snippet_runs_as_written(scratch, monkeypatch, capsys):
    root, first, appended, removed = scratch
    monkeypatch.chdir(root)
    namespace = {"__name__": "__readme__"}
    exec(compile(readme_python(), "README.md (python block)", "exec"), namespace)  # noqa: S102
    system, results, hits = namespace["system"], namespace["results"], namespace["hits"]
    counts = system.gallery.label_counts()
    # 3 classes x 2, the appended class's 2, one image of the first class removed
    assert counts == {first[0]: 1, first[1]: 2, first[2]: 2, appended: 2}
    assert removed[0] not in {r["path"] for r in system.gallery.records()}
    assert isinstance(results, list) and all({"bbox", "rec_docs", "rec_scores"} <= set(r) for r in results)
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["label"] == appended  # found after the append
    assert hits[0]["path"].startswith("images/")  # the gallery key: relative to image_root
    out = capsys.readouterr().out
    assert str(counts) in out


def test_api_takes_a_loaded_config_and_checks_overrides(scratch):
    import ppshitu

    root, *_ = scratch
    cfg = ppshitu.load_inference_config(ROOT / "configs/inference/inference_general.yaml",
                                        ["IndexProcess.return_k=3"])
    again = ppshitu.load_inference_config(cfg, ["IndexProcess.score_thres=0.6"])  # a copy: cfg unchanged
    assert again.IndexProcess.return_k == 3 and again.IndexProcess.score_thres == 0.6
    assert cfg.IndexProcess.score_thres is None  # (the shipped config: the gallery's calibrated value, else 0.5)
    with pytest.raises(ppshitu.ConfigError, match="did you mean"):
        ppshitu.load_inference_config(cfg, ["IndexProcess.retrun_k=3"])
    with pytest.raises(ppshitu.ConfigError, match="by must be"):
        ppshitu.remove_from_gallery(cfg, root / "gallery" / "old.txt", by="labels")


def test_import_ppshitu_is_cheap():
    code = ("import sys, ppshitu, ppshitu.cli_main; heavy = {'paddle', 'faiss', 'cv2', 'numpy'} & set(sys.modules); "
            "assert not heavy, heavy; assert callable(ppshitu.build_gallery); assert 'paddle' not in sys.modules; "
            "assert set(ppshitu.__all__) <= set(dir(ppshitu)); print(ppshitu.__version__)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import ppshitu
        ppshitu.nope  # noqa: B018
