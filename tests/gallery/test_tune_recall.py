"""IndexProcess.tune_recall: the recall@1 target the gallery's tuned ef_search / nprobe reaches on its own
vectors (ppshitu/gallery/search_tuning.py). A lower target stores a smaller setting that still reaches it,
the target is kept in the manifest beside the tuned value, an append with another target re-tunes, an
explicit nprobe still wins, and a value outside (0, 1) or a misspelt key is refused naming the key."""
import pathlib

import pytest

from ppshitu.config import load_config
from ppshitu.errors import ConfigError
from ppshitu.gallery import Gallery, search_tuning
from ppshitu.gallery.base import create_gallery
from ppshitu.schemas import INFER_SCHEMA

from test_search_tuning import DIM, photos

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/inference/inference_general.yaml"


def test_a_lower_target_stores_a_smaller_nprobe_that_reaches_it(tmp_path):
    v, labels, _ = photos(500)
    high = create_gallery({"index_dir": str(tmp_path / "high"), "index_method": "IVF", "tune_recall": 0.99},
                          DIM, vectors=v, labels=labels)
    low = create_gallery({"index_dir": str(tmp_path / "low"), "index_method": "IVF", "tune_recall": 0.7},
                         DIM, vectors=v, labels=labels)
    hi, lo = (Gallery.open(g.index_dir).manifest for g in (high, low))
    assert hi["tune_recall"] == hi["search_tuning"]["target"] == 0.99
    assert lo["tune_recall"] == lo["search_tuning"]["target"] == 0.7
    assert lo["search_tuning"]["recall_at_1"] >= 0.7 and lo["search_tuning"]["reached"]
    assert lo["search_tuning"]["value"] < hi["search_tuning"]["value"]   # (the same index: same nlist, same lists)
    assert lo["search_tuning"]["recall_at_1"] < hi["search_tuning"]["recall_at_1"]
    assert Gallery.open(low.index_dir).search_setting()["value"] == lo["search_tuning"]["value"]


def test_an_append_with_another_target_tunes_again_and_keeps_it(tmp_path):
    v, labels, _ = photos(500)
    g = Gallery.create(tmp_path / "g", DIM, index_method="IVF", vectors=v[:2000], labels=labels[:2000])
    assert g.manifest["search_tuning"]["target"] == search_tuning.TARGET_RECALL     # the default
    first = g.manifest["search_tuning"]["value"]
    g.add(v[2000:2010], labels[2000:2010], tune_recall=0.7)           # far below the growth that re-tunes
    again = Gallery.open(tmp_path / "g").manifest
    assert again["tune_recall"] == again["search_tuning"]["target"] == 0.7
    assert again["search_tuning"]["count"] == 2010 and again["search_tuning"]["value"] < first
    g.add(v[2010:2020], labels[2010:2020])                              # no target given: the stored one is kept
    assert Gallery.open(tmp_path / "g").manifest["search_tuning"]["count"] == 2010


def test_an_explicit_nprobe_still_wins(tmp_path):
    v, labels, _ = photos(100)
    g = create_gallery({"index_dir": str(tmp_path / "g"), "index_method": "IVF", "tune_recall": 0.5}, DIM,
                       vectors=v, labels=labels, nprobe=7)
    assert g.search_setting()["value"] == 7 and g.search_setting()["origin"] == "override"


@pytest.mark.parametrize("bad", [1.5, 1, 0, -0.2])
def test_a_target_outside_0_1_is_refused_naming_the_key(tmp_path, bad):
    with pytest.raises(ConfigError, match="IndexProcess.tune_recall"):
        load_config(CONFIG, [f"IndexProcess.tune_recall={bad}"], INFER_SCHEMA)
    v, labels, _ = photos(10)
    with pytest.raises(ConfigError, match="IndexProcess.tune_recall"):
        Gallery.create(tmp_path / "g", DIM, index_method="IVF", vectors=v, labels=labels, tune_recall=bad)
    assert not (tmp_path / "g").exists()
    with pytest.raises(ConfigError, match="IndexProcess.tune_recall"):
        Gallery.create(tmp_path / "ok", DIM, index_method="Flat", vectors=v, labels=labels).add(
            v[:1], labels[:1], tune_recall=bad)


def test_the_key_is_read_and_a_misspelling_gets_the_nearest_name():
    assert load_config(CONFIG, ["IndexProcess.tune_recall=0.95"], INFER_SCHEMA).IndexProcess.tune_recall == 0.95
    assert load_config(CONFIG, [], INFER_SCHEMA).IndexProcess.tune_recall == 0.98
    with pytest.raises(ConfigError, match="tune_recall"):
        load_config(CONFIG, ["IndexProcess.tune_recal=0.95"], INFER_SCHEMA)
