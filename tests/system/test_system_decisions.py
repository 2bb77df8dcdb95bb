"""RecognitionSystem's decisions, with a real Gallery and stand-in models whose embedding
is the crop's mean colour (so the right answer is known exactly)."""
import numpy as np
import pytest

from ppshitu.gallery import Gallery
from ppshitu.system import UNKNOWN, RecognitionSystem

RED, GREEN, BLUE = (220, 0, 0), (0, 220, 0), (0, 0, 220)


class MeanColourRec:
    embedding_size = 3
    fingerprint = None

    def preprocess(self, rgb):
        assert rgb.size > 0, "empty crop reached the model"
        return rgb.reshape(-1, 3).mean(0).astype(np.float32)[:, None, None]

    def predict_batch(self, batch):
        v = batch.reshape(len(batch), 3)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


class FixedDet:
    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 5)

    def predict(self, rgb):
        return self.boxes


def scene(objects, size=(200, 300)):
    img = np.zeros(size + (3,), np.uint8)
    for colour, (x1, y1, x2, y2) in objects:
        img[y1:y2, x1:x2] = colour
    return img


@pytest.fixture
def gallery(tmp_path):
    g = Gallery.create(tmp_path / "g", 3, dist_type="IP", index_method="Flat")
    g.add(np.eye(3, dtype=np.float32), ["red", "green", "blue"], ["r.jpg", "g.jpg", "b.jpg"])
    return Gallery.open(tmp_path / "g")


def test_whole_image_never_suppresses_two_detected_objects(gallery):
    # a big red object and a small green one: the whole image alone would be called "red"
    img = scene([(RED, (10, 10, 150, 190)), (GREEN, (200, 80, 260, 140))])
    det = FixedDet([[10, 10, 150, 190, 0.9], [200, 80, 260, 140, 0.8]])
    system = RecognitionSystem(MeanColourRec(), gallery, det, score_thres=0.6, rec_nms_thresold=0.05)
    whole = system.recognize([img], [np.zeros((0, 5))])[0]
    assert [r["rec_docs"] for r in whole] == ["red"]  # what PP-ShiTu's NMS would keep over both boxes
    results = system.predict(img)
    assert sorted(r["rec_docs"] for r in results) == ["green", "red"]
    assert all(r["source"] == "det" for r in results)
    green = next(r for r in results if r["rec_docs"] == "green")
    assert green["bbox"] == [200, 80, 260, 140] and green["rec_scores"] > 0.99


def test_below_threshold_is_unknown_not_the_nearest_label(gallery):
    grey = (120, 110, 100)  # closest to red, but far from every gallery vector
    img = scene([(grey, (0, 0, 300, 200))])
    system = RecognitionSystem(MeanColourRec(), gallery, None, score_thres=0.9)
    (r,) = system.predict(img)
    assert r["rec_docs"] == UNKNOWN and r["nearest_docs"] == "red" and r["rec_scores"] < 0.9
    system.score_thres = 0.5
    assert system.predict(img)[0]["rec_docs"] == "red"


def test_l2_threshold_goes_the_right_way(tmp_path):
    g = Gallery.create(tmp_path / "l2", 3, dist_type="L2", index_method="Flat")
    g.add(np.eye(3, dtype=np.float32), ["red", "green", "blue"], ["r", "g", "b"])
    g = Gallery.open(tmp_path / "l2")
    assert not g.higher_is_better
    system = RecognitionSystem(MeanColourRec(), g, None, score_thres=0.1)  # a distance
    (exact,) = system.predict(scene([(BLUE, (0, 0, 300, 200))]))
    assert exact["rec_docs"] == "blue" and exact["rec_scores"] < 1e-5
    (far,) = system.predict(scene([((120, 110, 100), (0, 0, 300, 200))]))
    assert far["rec_docs"] == UNKNOWN and far["rec_scores"] > 0.1


def test_without_detections_the_whole_image_is_the_candidate(gallery):
    system = RecognitionSystem(MeanColourRec(), gallery, FixedDet([]), score_thres=0.6)
    (r,) = system.predict(scene([(BLUE, (0, 0, 300, 200))]))
    assert r["source"] == "image" and r["rec_docs"] == "blue" and r["bbox"] == [0, 0, 300, 200]


def test_same_label_overlaps_merge_and_boxes_are_clipped(gallery):
    img = scene([(RED, (10, 10, 150, 190))])
    det = FixedDet([[10, 10, 150, 190, 0.9], [20, 20, 160, 195, 0.7],  # the same object twice
                    [-50, -40, 5000, 3, 0.6]])                         # outside and a sliver: dropped
    results = RecognitionSystem(MeanColourRec(), gallery, det, score_thres=0.6).predict(img)
    assert [r["rec_docs"] for r in results] == ["red"]
    assert results[0]["bbox"] == [10, 10, 150, 190]


def test_batch_of_images_gives_one_result_list_each(gallery):
    imgs = [scene([(RED, (0, 0, 300, 200))]), scene([(GREEN, (0, 0, 300, 200))])]
    out = RecognitionSystem(MeanColourRec(), gallery, None, score_thres=0.6).predict(imgs)
    assert [[r["rec_docs"] for r in res] for res in out] == [["red"], ["green"]]


def test_predict_paths_skips_unreadable_images(gallery, tmp_path):
    import cv2
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), scene([(GREEN, (0, 0, 300, 200))])[:, :, ::-1])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    errors = []
    system = RecognitionSystem(MeanColourRec(), gallery, None, score_thres=0.6)
    out = list(system.predict_paths([str(bad), str(good)], on_error=lambda p, e: errors.append(p)))
    assert [p for p, _ in out] == [str(good)] and out[0][1][0]["rec_docs"] == "green"
    assert errors == [str(bad)]
