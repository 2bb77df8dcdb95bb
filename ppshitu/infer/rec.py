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
from .preprocess import RecPreprocess
from .runtime import load_runtime, model_files
from .spec import fingerprint, read_spec


def l2_normalize(x, eps=1e-12):
    """Row-wise L2 normalisation; an all-zero row stays zero instead of becoming NaN."""
    norm = np.sqrt(np.sum(np.square(x, dtype=np.float32), axis=1, keepdims=True))
    return (x / np.maximum(norm, eps)).astype(np.float32)


class RecPredictor:
    def __init__(self, model_dir, preprocess=None, max_batch_size=32, backend="paddle", **runtime_options):
        """`preprocess`: RecPreProcess.transform_ops, used only when the directory has no
        inference.yml (PP-ShiTu's published models); an exported ppshitu model always uses
        the preprocessing it was trained with. `runtime_options` go to the runtime
        (ppshitu.infer.runtime: use_gpu, cpu_threads, precision, enable_mkldnn, ...)."""
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
        self.runtime = load_runtime(model_dir, backend, **runtime_options)
        self._input, self._output = self.runtime.input_names[0], self.runtime.output_names[0]
        if (self.spec or {}).get("format") == "onnx":  # imported: the embedding output inference.yml names
            self._output = self.runtime.port_name(self.spec["output_name"], "output")
        self._fingerprint = None  # hashed from the weights on first use
        self.embedding_size = int(self.spec["embedding_size"]) if self.spec else self._probe_embedding_size()

    @property
    def fingerprint(self):
        """The id of the weights (sha256 prefix of inference.pdiparams itself, never the copy in
        inference.yml, so new weights under an old inference.yml are not taken for the old model)."""
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
            out.append(self.runtime.run({self._input: chunk})[self._output].reshape(len(chunk), -1))
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
