"""One interface for every inference runtime: load a model directory, feed named inputs, get named outputs.

    rt = load_runtime("models/rec", backend="paddle", cpu_threads=2)
    rt.input_names, rt.output_names                  # ["x"], ["save_infer_model/scale_0.tmp_0"]
    outputs = rt.run({"x": batch})                   # {name: float32 array}

A runtime is one file that registers itself here (Paddle Inference is `paddle_runtime.py`, OpenVINO
`openvino_runtime.py`); predictors,
tools, the service and the benchmarks only see this interface. Options every runtime takes:
`use_gpu`, `cpu_threads`, `precision` (fp32 | bf16 | int8); a runtime refuses what it cannot honour.
"""
import os

from ..errors import ConfigError, PPShiTuError
from ..registry import Registry

RUNTIMES = Registry("inference_backend")
PRECISIONS = ("fp32", "bf16", "int8")


class ModelDirError(PPShiTuError, FileNotFoundError):
    pass


def model_files(model_dir, prefix="inference"):
    """(program file, params file) of an inference directory: Paddle's PIR json preferred, then the legacy
    .pdmodel, each with .pdiparams; else an OpenVINO IR .xml with its .bin (tools/quantize.py writes only
    that, and only the openvino backend runs it)."""
    params = os.path.join(model_dir, prefix + ".pdiparams")
    for ext in (".json", ".pdmodel"):
        prog = os.path.join(model_dir, prefix + ext)
        if os.path.isfile(prog) and os.path.isfile(params):
            return prog, params
    xml, bin_ = os.path.join(model_dir, prefix + ".xml"), os.path.join(model_dir, prefix + ".bin")
    if os.path.isfile(xml) and os.path.isfile(bin_):
        return xml, bin_
    raise ModelDirError(f"{model_dir}: no inference model found (expected {prefix}.json or {prefix}.pdmodel "
                        f"with {prefix}.pdiparams, or an OpenVINO {prefix}.xml with {prefix}.bin)")


class Runtime:
    """The interface. `run` is not re-entrant: callers own a runtime per thread."""
    input_names = ()
    output_names = ()

    def run(self, inputs):
        """{input name: array} -> {output name: array}."""
        raise NotImplementedError


def runtime_names():
    """Every runtime ppshitu ships, registered (their modules import paddle / openvino lazily)."""
    from . import openvino_runtime, paddle_runtime  # noqa: F401
    return RUNTIMES.names()


def load_runtime(model_dir, backend="paddle", **options):
    if options.get("precision", "fp32") not in PRECISIONS:
        raise ConfigError(f"Global.precision must be one of {list(PRECISIONS)}, got {options['precision']!r}")
    runtime_names()  # registers them all
    return RUNTIMES.build(backend, where="Global.inference_backend", model_dir=model_dir, **options)
