"""Shared fixtures of the photo-library tests: the demo recognition model (loaded once) and small
generated class folders."""
import shutil

import pytest

from library_helpers import make_cfg


@pytest.fixture(scope="session")
def rec():
    from ppshitu.infer.factory import rec_predictor

    return rec_predictor(make_cfg())


@pytest.fixture(scope="session")
def det():
    from ppshitu.infer.factory import det_predictor

    return det_predictor(make_cfg(), max_det_results=1)


@pytest.fixture(scope="session")
def class_set(tmp_path_factory):
    """6 classes x 4 views of 64 px in images/class_NNNN/VVV.jpg (a copy per test: see `folder`)."""
    from dataset.synthetic import make_recognition_set

    root = tmp_path_factory.mktemp("classes")
    make_recognition_set(root, num_classes=6, views_per_class=4, image_size=64, num_train_classes=1,
                         gallery_views=1, seed=3)
    return root / "images"


@pytest.fixture
def folder(class_set, tmp_path):
    """A fresh copy of the class folders to index (tests change it)."""
    dst = tmp_path / "photos"
    shutil.copytree(class_set, dst)
    return dst
