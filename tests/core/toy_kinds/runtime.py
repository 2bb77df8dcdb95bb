"""A toy inference runtime: the "model" is a fixed 8x8 subsampling of the input, whatever the directory holds."""
import numpy as np

from ppshitu.infer.runtime_base import Runtime, model_files


class ToyRuntime(Runtime):
    input_names = ("x",)
    output_names = ("embedding",)
    made = []  # the options of every instance (what the test checks)

    @classmethod
    def config_options(cls, g):
        return {"profile": bool(g.get("enable_profile", False))}  # the one Global key it reads

    def __init__(self, model_dir, use_gpu=False, cpu_threads=2, precision="fp32", profile=False):
        model_files(model_dir)
        ToyRuntime.made.append({"model_dir": model_dir, "cpu_threads": cpu_threads, "precision": precision,
                                "profile": profile})

    def run(self, inputs):
        x = np.asarray(inputs["x"], np.float32)
        h, w = x.shape[2:]
        return {"embedding": x[:, :, ::max(1, h // 8), ::max(1, w // 8)][:, :, :8, :8].reshape(len(x), -1)}
