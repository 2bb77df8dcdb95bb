"""Query-time options (issue 27): flip averaging in the one embedding path (a mirror image embeds like the image;
the fingerprint records it, so a flip gallery refuses plain queries and the other way round), alpha-QE at search
time (the expanded query is the weighted sum the docs state; off by default; on the system's search path), and
the config keys checked with nearest-name errors. Stand-in models: fast, no Paddle except one demo-model check."""
from pathlib import Path

import numpy as np
import pytest

from ppshitu.config import load_config
from ppshitu.embedder import Embedder
from ppshitu.errors import ConfigError
from ppshitu.gallery import Gallery
from ppshitu.gallery.errors import GalleryError
from ppshitu.gallery.model_id import FLIP_MARK, model_fingerprint, text_fingerprint
from ppshitu.gallery.query_expansion import expand_queries
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.system import RecognitionSystem
from tests.gallery.gallery_helpers import class_vectors

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "inference" / "inference_general.yaml"


class SidedRec:
    """A model that sees left from right: per channel, the mean of the left half and of the right half."""
    embedding_size, fingerprint = 6, "sided"

    def __init__(self, flip=False):
        self.flip_average = flip

    def preprocess(self, rgb):
        return (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)

    def predict_batch(self, batch):
        w = batch.shape[3] // 2
        v = np.concatenate([batch[..., :w].mean((2, 3)), batch[..., w:].mean((2, 3))], 1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _sided_image():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (200, 20, 20)
    rgb[:, 8:] = (20, 20, 200)
    return rgb


def test_flip_averaging_embeds_a_mirror_image_like_the_image():
    rgb = _sided_image()
    plain, flip = Embedder(SidedRec(False)), Embedder(SidedRec(True))
    a, b = plain.embed_crops([rgb, rgb[:, ::-1]])
    assert float(a @ b) < 0.9  # the model tells the two apart
    a, b = flip.embed_crops([rgb, rgb[:, ::-1]])
    assert float(a @ b) > 0.9999 and abs(float(np.linalg.norm(a)) - 1) < 1e-5
    # every path goes through run(): a file-less batch and a single query agree
    assert np.allclose(flip.embed_query(rgb, detect=False)[0][0], a, atol=1e-6)


def test_the_fingerprint_records_flip_and_the_gallery_refuses_the_other_kind(tmp_path):
    assert model_fingerprint(SidedRec(True)) == "sided" + FLIP_MARK and model_fingerprint(SidedRec(False)) == "sided"
    assert text_fingerprint("IMG" + FLIP_MARK + "+text:TXT") == "TXT"
    g = Gallery.create(tmp_path / "g", 6, index_method="Flat", model_fingerprint=model_fingerprint(SidedRec(True)))
    g.add(Embedder(SidedRec(True)).embed_crops([_sided_image()]), ["a"], ["a.png"])
    with pytest.raises(GalleryError, match=r"\+flip"):
        g.check_model(model_fingerprint(SidedRec(False)), 6)


def test_the_config_turns_flip_on_and_a_flip_gallery_refuses_plain_queries(tmp_path):
    from ppshitu.infer.factory import rec_predictor

    base = [f"Global.rec_inference_model_dir={ROOT}/models/demo/rec", "Global.det_inference_model_dir=",
            f"IndexProcess.index_dir={tmp_path}/g"]
    plain = rec_predictor(load_config(CONFIG, base, INFER_SCHEMA))
    flip = rec_predictor(load_config(CONFIG, base + ["RecPreProcess.flip_average=true"], INFER_SCHEMA))
    assert not plain.flip_average and flip.flip_average
    assert model_fingerprint(flip) == model_fingerprint(plain) + FLIP_MARK
    rgb = _sided_image()
    g = Gallery.create(tmp_path / "g", flip.embedding_size, index_method="Flat",
                       model_fingerprint=model_fingerprint(flip))
    g.add(Embedder(flip).embed_crops([rgb]), ["a"], ["a.png"])
    with pytest.raises(GalleryError, match=r"\+flip"):  # queries embedded without flip: refused
        RecognitionSystem.from_config(CONFIG, base)
    system = RecognitionSystem.from_config(CONFIG, base + ["RecPreProcess.flip_average=true"])
    assert system.search(rgb[:, ::-1], k=1)[0]["score"] > 0.999  # the mirror image: the same vector


@pytest.mark.parametrize("override,words", [
    ("RecPreProcess.flip_averag=true", "did you mean RecPreProcess.flip_average"),
    ("IndexProcess.query_expanson=2", "did you mean IndexProcess.query_expansion"),
    ("IndexProcess.query_expansion=-1", "query_expansion"),
    ("IndexProcess.qe_alpha=-2", "qe_alpha"),
    ("RecPreProcess.flip_average=maybe", "flip_average"),
    ("IndexProcess.rerank=cls", "rerank"),
    ("IndexProcess.rerannk=csls", "did you mean IndexProcess.rerank"),
])
def test_bad_option_values_are_refused_by_name(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config(CONFIG, [override], INFER_SCHEMA)


def test_defaults_are_off():
    cfg = load_config(CONFIG, [], INFER_SCHEMA)
    assert cfg.IndexProcess.query_expansion == 0 and not cfg.RecPreProcess.get("flip_average", False)


@pytest.fixture
def gallery(tmp_path):
    v, labels = class_vectors(5, 4, seed=2)
    g = Gallery.create(tmp_path / "qe", v.shape[1], index_method="Flat")
    g.add(v, labels, [f"{i}.jpg" for i in range(len(labels))])
    return g, v, labels


def test_alpha_qe_is_the_weighted_sum_of_the_query_and_its_neighbours(gallery):
    g, v, _ = gallery
    q = v[:3] + 0.3
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    assert np.array_equal(expand_queries(g, q, 0), q)
    out = expand_queries(g, q, 2, alpha=3.0)
    _, scores, ids = g.search(q, 2)
    nb = g.get_vectors(ids.ravel()).reshape(3, 2, -1)
    want = q + (np.maximum(scores, 0)[:, :, None] ** 3 * nb).sum(1)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.allclose(out, want, atol=1e-5)


def test_the_system_searches_the_expanded_query(gallery):
    g, v, labels = gallery
    rec = SidedRec()
    rec.embedding_size = g.embedding_size
    plain = RecognitionSystem(rec, g, None, query_expansion=0)
    qe = RecognitionSystem(rec, g, None, query_expansion=3, qe_alpha=1.0)
    q = v[5:6]
    assert np.array_equal(plain.expand(q), q)
    assert np.allclose(qe.expand(q), expand_queries(g, q, 3, 1.0))
    # a query among its class's items still answers its class (expansion draws it in, not away)
    assert g.search(qe.expand(v), 1)[0] == [[lab] for lab in labels]
    with pytest.raises(ConfigError, match="query_expansion"):
        RecognitionSystem(rec, g, None, query_expansion=-1)


def test_csls_reranking_demotes_a_hub_and_keeps_the_plain_scores(tmp_path):
    from ppshitu.gallery.query_expansion import rerank_csls

    def unit(*rows):
        v = np.asarray(rows, np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    # a hub near a dense group, and an isolated item; the query is a hair nearer the hub
    v = unit([1, 0, 0], [1, 0, 0.15], [1, 0, -0.15], [1, -0.1, 0.1], [1, -0.1, -0.1], [0.8, 0.6, 0])
    labels = ["hub", "A", "A", "A", "A", "T"]
    g = Gallery.create(tmp_path / "csls", 3, index_method="Flat")
    g.add(v, labels, [f"{i}.jpg" for i in range(6)])
    q = unit([0.95, 0.31, 0])
    plain = g.search(q, 2)
    assert plain[0][0][0] == "hub"
    got_labels, got_scores, got_ids = rerank_csls(g, q, 2)
    assert got_labels[0][0] == "T"  # 2 x 0.946 - 0.8 beats 2 x 0.95 - 0.99
    by_id = dict(zip(np.asarray(g.search(q, 6)[2][0]).tolist(), g.search(q, 6)[1][0].tolist()))
    assert all(abs(by_id[int(i)] - float(s)) < 1e-6 for i, s in zip(got_ids[0], got_scores[0]))  # plain scores
    rec = SidedRec()
    rec.embedding_size = 3
    system = RecognitionSystem(rec, g, None, rerank="csls")
    assert system.search_vectors(q, 1)[0] == [["T"]]
    assert RecognitionSystem(rec, g, None).search_vectors(q, 1)[0] == [["hub"]]
    with pytest.raises(ConfigError, match="rerank"):
        RecognitionSystem(rec, g, None, rerank="kreciprocal")
