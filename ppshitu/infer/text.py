"""The text tower of an imported text-image model (tools/import_model.py), on the OpenVINO runtime.

    text = TextPredictor("models/clip")                   # the directory import_model.py wrote
    out = text.embed(["a red car", "红色的汽车"])          # TextEmbedded: vectors float32 [N, D], L2-normalised
    out.truncated                                          # per query: cut to the context length

inference.yml's `text` section says which file is the encoder, its input/output names, the tokenizer (kind,
file, context length, start/end/pad ids) and the embedding size, which equals the image encoder's: a text
vector is searched in a gallery of image vectors made by the same model (the gallery's fingerprint names
both encoders: gallery/model_id.py).
"""
import os
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .rec import l2_normalize
from .runtime import load_runtime
from .spec import SPEC_FILE, read_spec
from .text_tokenizer import TextTokenizer

TEXT_KEYS = ("onnx_model", "input_name", "output_name", "embedding_size", "tokenizer")
TOKENIZER_KEYS = ("kind", "file", "context_length", "sot_id", "eot_id")


class TextModelError(ConfigError):
    """A model directory without a (usable) text encoder."""


@dataclass
class TextEmbedded:
    vectors: np.ndarray   # float32 [N, D], L2-normalised
    truncated: list       # per query: its tokens did not all fit in the context length
    counts: list          # per query: its tokens (without start/end)
    context_length: int


def text_spec(model_dir, spec=None):
    """inference.yml's `text` section, checked; TextModelError when the model has no text encoder."""
    spec = read_spec(model_dir) if spec is None else spec
    where = os.path.join(model_dir, SPEC_FILE)
    text = (spec or {}).get("text")
    if not text:
        raise TextModelError(f"{model_dir}: this model has no text encoder (no 'text' section in {where}); text "
                             f"queries need a text-image model imported with tools/import_model.py --text-encoder")
    if not isinstance(text, dict) or not isinstance(text.get("tokenizer"), dict):
        raise TextModelError(f"{where}: 'text' must be a mapping with a 'tokenizer' mapping, got {text!r}"[:300])
    missing = [k for k in TEXT_KEYS if k not in text] + [f"tokenizer.{k}" for k in TOKENIZER_KEYS
                                                          if k not in text["tokenizer"]]
    if missing:
        raise TextModelError(f"{where}: text section lacks {missing}")
    if int(text["embedding_size"]) != int(spec["embedding_size"]):
        raise TextModelError(f"{where}: text.embedding_size {text['embedding_size']} differs from the image "
                             f"encoder's embedding_size {spec['embedding_size']}")
    return text


class TextPredictor:
    def __init__(self, model_dir, backend="openvino", **runtime_options):
        if backend != "openvino":
            raise ConfigError(f"the text encoder runs on inference_backend openvino (an ONNX model), not {backend!r}")
        self.model_dir = model_dir
        self.spec = text_spec(model_dir)
        self.tokenizer = TextTokenizer.from_spec(model_dir, self.spec["tokenizer"])
        self.embedding_size = int(self.spec["embedding_size"])
        self.runtime = load_runtime(model_dir, "openvino", model_file=self.spec["onnx_model"], **runtime_options)
        port = self.runtime.port_name  # inference.yml's names -> the runtime's (a port may have several names)
        self._ids = port(self.spec["input_name"], "input")
        self._mask = port(self.spec["mask_name"], "input") if self.spec.get("mask_name") else None
        self._dtype = np.int32 if self.spec.get("input_dtype") == "int32" else np.int64
        self._output = port(self.spec["output_name"], "output")

    @property
    def context_length(self):
        return self.tokenizer.context_length

    def embed(self, texts):
        """TextEmbedded of `texts` (a string or a list); TextQueryError for an empty query."""
        tokens = self.tokenizer.encode(texts)
        inputs = {self._ids: tokens.ids.astype(self._dtype)}
        if self._mask:
            inputs[self._mask] = tokens.mask.astype(self._dtype)
        out = self.runtime.run(inputs)[self._output].reshape(len(tokens.ids), -1)
        return TextEmbedded(l2_normalize(np.asarray(out, np.float32)), tokens.truncated, tokens.counts,
                            self.context_length)

    def __repr__(self):
        return f"TextPredictor({os.path.basename(os.path.normpath(self.model_dir))}, D={self.embedding_size})"


def truncation_note(info):
    """The line said when a text query was cut to the model's context length (None when it was not)."""
    if not info.get("truncated"):
        return None
    return (f"the query has {info['tokens']} tokens; the model reads {info['context_length'] - 2} (context length "
            f"{info['context_length']} with its start and end tokens): searched with its first "
            f"{info['context_length'] - 2}")
