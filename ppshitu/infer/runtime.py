"""One interface for every inference runtime: load a model directory, feed named inputs, get named outputs.

    rt = load_runtime("models/rec", backend="paddle", cpu_threads=2)
    rt.input_names, rt.output_names                  # ["x"], ["save_infer_model/scale_0.tmp_0"]
    outputs = rt.run({"x": batch})                   # {name: float32 array}

A runtime is one file implementing `runtime_base.Runtime` (Paddle Inference is `paddle_runtime.py`, OpenVINO
`openvino_runtime.py`) plus its line in RUNTIMES below, imported the first time a config selects it
(`Global.inference_backend`); predictors, tools, the service and the benchmarks only see this interface.
Options every runtime takes: `use_gpu`, `cpu_threads`, `precision` (fp32 | bf16 | int8); the Global keys it
reads beyond those are its own `config_options`; a runtime refuses what it cannot honour.
"""
from ..errors import ConfigError
from ..registry import Registry
from .runtime_base import PRECISIONS, ModelDirError, Runtime, model_files  # noqa: F401  (the interface)

RUNTIMES = Registry("inference_backend", {
    "paddle": "ppshitu.infer.paddle_runtime:PaddleRuntime",
    "openvino": "ppshitu.infer.openvino_runtime:OpenVINORuntime",
})


def runtime_names():
    """Every registered runtime (nothing is imported)."""
    return RUNTIMES.names()


def runtime_class(backend):
    return RUNTIMES.get(backend, where="Global.inference_backend")


def load_runtime(model_dir, backend="paddle", **options):
    if options.get("precision", "fp32") not in PRECISIONS:
        raise ConfigError(f"Global.precision must be one of {list(PRECISIONS)}, got {options['precision']!r}")
    return RUNTIMES.build(backend, where="Global.inference_backend", model_dir=model_dir, **options)
