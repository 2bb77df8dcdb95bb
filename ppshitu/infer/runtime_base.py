"""What every inference runtime is: the interface a runtime module implements (it imports this module,
never the registry in runtime.py, which names it).

    class MyRuntime(Runtime):
        def __init__(self, model_dir, use_gpu=False, cpu_threads=2, precision="fp32", my_option=...): ...
        def run(self, inputs): ...                     # {input name: array} -> {output name: array}

        @classmethod
        def config_options(cls, g):                    # the Global keys it reads beyond the common ones
            return {"my_option": g.get("my_option", ...)}

Options every runtime takes: `model_dir`, `use_gpu`, `cpu_threads`, `precision` (fp32 | bf16 | int8); a
runtime refuses what it cannot honour.
"""
import os

from ..errors import PPShiTuError

PRECISIONS = ("fp32", "bf16", "int8")


class ModelDirError(PPShiTuError, FileNotFoundError):
    pass


def model_files(model_dir, prefix="inference"):
    """(program file, params file) of an inference directory: Paddle's PIR json preferred, then the legacy
    .pdmodel, each with .pdiparams; else an OpenVINO IR .xml with its .bin (tools/quantize.py writes only
    that, and only the openvino backend runs it); else an ONNX file (tools/import_model.py; OpenVINO only)."""
    params = os.path.join(model_dir, prefix + ".pdiparams")
    for ext in (".json", ".pdmodel"):
        prog = os.path.join(model_dir, prefix + ext)
        if os.path.isfile(prog) and os.path.isfile(params):
            return prog, params
    xml, bin_ = os.path.join(model_dir, prefix + ".xml"), os.path.join(model_dir, prefix + ".bin")
    if os.path.isfile(xml) and os.path.isfile(bin_):
        return xml, bin_
    onnx = os.path.join(model_dir, prefix + ".onnx")  # tools/import_model.py: program and weights in one file
    if os.path.isfile(onnx):
        return onnx, onnx
    raise ModelDirError(f"{model_dir}: no inference model found (expected {prefix}.json or {prefix}.pdmodel "
                        f"with {prefix}.pdiparams, an OpenVINO {prefix}.xml with {prefix}.bin, or an imported "
                        f"{prefix}.onnx)")


def is_onnx_dir(model_dir):
    """Whether `model_dir` holds an imported ONNX model (tools/import_model.py), which only OpenVINO runs."""
    try:
        return model_files(model_dir)[0].endswith(".onnx")
    except ModelDirError:
        return False


class Runtime:
    """The interface. `run` is not re-entrant: callers own a runtime per thread."""
    input_names = ()
    output_names = ()

    @classmethod
    def config_options(cls, global_section):
        """{option: value} this runtime takes from an inference config's Global section, beyond the common
        options (use_gpu, cpu_threads, precision), which ppshitu.infer.factory maps for every runtime."""
        return {}

    def run(self, inputs):
        """{input name: array} -> {output name: array}."""
        raise NotImplementedError
