"""Which precision (and which model directory) a model runs in: `Global.precision`, and `auto` chosen for the CPU.

    choice = choose_precision("models/demo/rec", "rec", "openvino", "auto")
    choice.model_dir, choice.precision, choice.reason   # "models/demo/rec_int8", "int8", "its check passed ..."

An explicit fp32 / bf16 / int8 is kept as given (the runtime refuses what it cannot honour, with the reason).
`auto` (what an unset Global.precision means on the openvino backend) picks, for each model:
  bf16  where the CPU computes bf16 natively (avx512_bf16 / amx_bf16 within ONEDNN_MAX_CPU_ISA; openvino_runtime)
  int8  where a quantized model sits beside the fp32 one (`<model_dir>_int8`, tools/quantize.py's default --out),
        was quantized from these very weights and passed its agreement check (quantize_report.json: passed),
        with the overflow fix on every layer where the CPU lacks VNNI (else int8 answers here differ from the check's)
  fp32  otherwise; an int8 model beside that failed its check (or has none) is named in the reason
A model directory that is itself int8 runs int8. On the paddle backend auto is the Paddle default (fp32, or bf16
with enable_mkldnn_bfloat16): Paddle runs no int8 model, and its bf16 is not chosen for users unasked.
The choice and its reason are printed once per model (stderr), as the score threshold's source is.
"""
import json
import logging
import os
import sys
from dataclasses import dataclass

from ..errors import ConfigError
from .spec import read_spec

log = logging.getLogger("ppshitu.infer")

INT8_SUFFIX = "_int8"  # tools/quantize.py writes <model_dir>_int8 unless --out says otherwise
REPORT_FILE = "quantize_report.json"
_ANNOUNCED = set()


@dataclass
class Choice:
    model_dir: str
    precision: str
    reason: str
    alternative: str = None  # auto's other candidate directory (a gallery built by it may ask for it)


def int8_beside(model_dir):
    return os.path.normpath(str(model_dir)).rstrip(os.sep) + INT8_SUFFIX


def read_report(int8_dir):
    """quantize_report.json of an int8 directory, or None."""
    path = os.path.join(int8_dir, REPORT_FILE)
    if not os.path.isfile(path):
        return None
    from ..utils.files import MAX_CONFIG_BYTES, read_input_text

    try:
        report = json.loads(read_input_text(path, "quantize report", MAX_CONFIG_BYTES, ConfigError))
    except ValueError as e:
        raise ConfigError(f"{path}: not a quantize report ({e})") from e
    if not isinstance(report, dict):
        raise ConfigError(f"{path}: not a quantize report (a JSON object)")
    return report


def int8_verdict(model_dir):
    """(int8 dir or None, why): the passing quantized model beside `model_dir`, else None and the reason."""
    int8_dir = int8_beside(model_dir)
    if not os.path.isfile(os.path.join(int8_dir, "inference.yml")):
        return None, f"no quantized model beside it ({int8_dir})"
    spec, source = read_spec(int8_dir) or {}, read_spec(model_dir) or {}
    if spec.get("precision") != "int8":
        return None, f"{int8_dir} is not an int8 model"
    if source.get("fingerprint") and spec.get("quantized_from") != source["fingerprint"]:
        return None, f"{int8_dir} was quantized from other weights (quantize again)"
    report = read_report(int8_dir)
    if report is None:
        return None, f"{int8_dir} has no agreement check ({REPORT_FILE}: quantize again)"
    agreement, target = report.get("agreement"), report.get("target")
    if report.get("passed") is not True:
        return None, f"{int8_dir} failed its agreement check ({agreement} < target {target})"
    if (report.get("settings") or {}).get("overflow_fix") != "enable" and not has_vnni():
        return None, (f"{int8_dir} was quantized without the overflow fix on every layer, so its check does not "
                      f"hold on a CPU without VNNI, as this one (quantize again)")
    return int8_dir, f"{int8_dir} passed its agreement check ({agreement} >= target {target})"


def has_vnni():
    """Whether the int8 kernels here have VNNI (no 16-bit saturation: quantize._settings' overflow fix)."""
    from ..utils.cpu import kernel_flags

    return bool(kernel_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def requested(g):
    """Global.precision as asked: None means auto on openvino; enable_mkldnn_bfloat16 asks for bf16."""
    precision = g.get("precision")
    if precision is None and g.get("enable_mkldnn_bfloat16"):
        return "bf16"
    return precision or "auto"


def auto_float(backend):
    """(bf16 | fp32, why): the float precision auto runs on `backend` on this CPU."""
    if backend != "openvino":
        return "fp32", f"auto on the {backend} backend"
    from .openvino_runtime import bf16_support

    native, why = bf16_support()
    if native:
        return "bf16", f"this CPU computes bf16 natively ({why.split(';')[0]})"
    return "fp32", why


def choose_precision(model_dir, kind, backend, precision):
    """A Choice for `model_dir` (kind 'rec' or 'det') on `backend`, `precision` fp32 | bf16 | int8 | auto."""
    if precision != "auto":
        return Choice(model_dir, precision, "Global.precision in the config")
    if backend != "openvino":
        return Choice(model_dir, "fp32", f"auto on the {backend} backend")
    if (read_spec(model_dir) or {}).get("precision") == "int8":
        return Choice(model_dir, "int8", f"{model_dir} is an int8 model")
    precision, why = auto_float(backend)
    if precision == "bf16":
        return Choice(model_dir, "bf16", why)
    int8_dir, verdict = int8_verdict(model_dir)
    if int8_dir:
        return Choice(int8_dir, "int8", f"{verdict}; no native bf16", alternative=model_dir)
    return Choice(model_dir, "fp32", f"no native bf16, and {verdict}")


def announce(kind, choice):
    """Print the choice and its reason once per (model, precision) in this process."""
    key = (kind, os.path.abspath(choice.model_dir), choice.precision)
    log.debug("precision %s for %s (%s): %s", choice.precision, kind, choice.model_dir, choice.reason)
    if key not in _ANNOUNCED:
        _ANNOUNCED.add(key)
        print(f"precision {choice.precision} for the {kind} model {choice.model_dir}: {choice.reason}",
              file=sys.stderr)
