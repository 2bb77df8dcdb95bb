"""OpenVINO's parts of ppshitu, one concern a module (the runtime itself is ppshitu/infer/openvino_runtime.py):

    convert.py   which program a model directory gives OpenVINO; PIR -> ONNX -> IR conversion and its
                 content-addressed cache; write_ir (an IR beside an export)
    passes.py    graph passes: the CPU rewrite of HardSigmoid, the front layers kept f32 under bf16,
                 dynamic batch, is_quantized

`_ov()` imports openvino (a ConfigError naming the package when it is missing): nothing here imports it
at module import time.
"""
from ...errors import ConfigError, PPShiTuError


class OpenVINOError(PPShiTuError):
    pass


def _ov():
    try:
        import openvino
    except ImportError as e:
        raise ConfigError("Global.inference_backend openvino: the openvino package is not installed "
                          "(pip install openvino; see requirements.txt)") from e
    return openvino
