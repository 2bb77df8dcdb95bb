"""The recognition (embedding) model under Paddle Inference (never imports paddleclas).

    rec = RecPredictor("models/rec")
    vectors = rec.predict([rgb1, rgb2])          # float32 [N, D], L2-normalized

All crops of a query go through the network as one batch; `preprocess` is thread-safe so
callers can decode and pre-process the next images while `predict_batch` runs.
"""
import os

import numpy as np

from ..errors import ConfigError
from ..utils.image import as_rgb_uint8
from .engine import create_predictor, model_files
from .preprocess import RecPreprocess
from .spec import fingerprint, read_spec


def l2_normalize(x, eps=1e-12):
    """Row-wise L2 normalisation; an all-zero row stays zero instead of becoming NaN."""
    norm = np.sqrt(np.sum(np.square(x, dtype=np.float32), axis=1, keepdims=True))
    return (x / np.maximum(norm, eps)).astype(np.float32)


class RecPredictor:
    def __init__(self, model_dir, use_gpu=False, enable_mkldnn=True, cpu_threads=2, bf16=False,
                 preprocess=None, max_batch_size=32, ir_optim=True):
        """`preprocess`: RecPreProcess.transform_ops, used only when the directory has no
        inference.yml (PP-ShiTu's published models); an exported ppshitu model always uses
        the preprocessing it was trained with."""
        self.model_dir = model_dir
        model_files(model_dir)  # a wrong directory is named before anything else
        self.spec = read_spec(model_dir)
        if self.spec is not None and self.spec["model_type"] != "rec":
            raise ConfigError(f"{model_dir}: inference.yml says model_type {self.spec['model_type']!r}; "
                              f"rec_inference_model_dir needs a recognition model")
        if self.spec is not None:
            self.preprocess = RecPreprocess.from_spec(self.spec)
        elif preprocess:
            self.preprocess = RecPreprocess.from_transform_ops(preprocess)
        else:
            raise ConfigError(f"{model_dir}: no inference.yml, so RecPreProcess.transform_ops must say how to "
                              f"pre-process for this model")
        self.max_batch_size = max(1, int(max_batch_size))
        self._predictor = create_predictor(model_dir, use_gpu=use_gpu, enable_mkldnn=enable_mkldnn,
                                           cpu_threads=cpu_threads, bf16=bf16, ir_optim=ir_optim)
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output = self._predictor.get_output_handle(self._predictor.get_output_names()[0])
        self._fingerprint = self.spec.get("fingerprint") if self.spec else None
        self.embedding_size = int(self.spec["embedding_size"]) if self.spec else self._probe_embedding_size()

    @classmethod
    def from_config(cls, cfg):
        """From an inference config (PP-ShiTu's Global / RecPreProcess sections)."""
        g = cfg["Global"]
        model_dir = g.get("rec_inference_model_dir") or g.get("inference_model_dir")
        if not model_dir:
            raise ConfigError("Global.rec_inference_model_dir is required (an exported recognition model)")
        return cls(model_dir, use_gpu=g.get("use_gpu", False), enable_mkldnn=g.get("enable_mkldnn", True),
                   cpu_threads=g.get("cpu_num_threads", 2), bf16=g.get("enable_mkldnn_bfloat16", False),
                   preprocess=(cfg.get("RecPreProcess") or {}).get("transform_ops"),
                   max_batch_size=max(32, int(cfg.get("IndexProcess", {}).get("batch_size", 32) or 32)),
                   ir_optim=g.get("ir_optim", True))

    @property
    def fingerprint(self):
        """The id of the weights (sha256 prefix of inference.pdiparams): galleries record it."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(model_files(self.model_dir)[1])
        return self._fingerprint

    def predict_batch(self, batch):
        """float32 [N, 3, H, W] (already pre-processed) -> float32 [N, D], L2-normalized."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[0] == 0:
            raise ValueError(f"predict_batch expects a non-empty [N, 3, H, W] batch, got {batch.shape}")
        out = []
        for start in range(0, len(batch), self.max_batch_size):
            chunk = batch[start:start + self.max_batch_size]
            self._input.reshape(list(chunk.shape))
            self._input.copy_from_cpu(chunk)
            self._predictor.run()
            out.append(self._output.copy_to_cpu().reshape(len(chunk), -1))
        return l2_normalize(np.concatenate(out))

    def predict(self, images):
        """A list of RGB uint8 images (or one image) -> float32 [N, D]."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        if len(images) == 0:
            return np.zeros((0, self.embedding_size), np.float32)
        batch = np.stack([self.preprocess(as_rgb_uint8(im, f"image {i}")) for i, im in enumerate(images)])
        return self.predict_batch(batch)

    def _probe_embedding_size(self):
        h, w = self.preprocess.input_size
        return int(self.predict_batch(np.zeros((1, 3, h, w), np.float32)).shape[1])

    def __repr__(self):
        return f"RecPredictor({os.path.basename(os.path.normpath(self.model_dir))}, D={self.embedding_size})"
