"""What this CPU is and can do, from /proc/cpuinfo: named in test logs and benchmark tables, and read by the
runtimes that choose kernels (bf16 needs avx512_bf16 or AMX)."""
import os
import platform

# the features that change which kernels Paddle's oneDNN and OpenVINO run, hence speed and rounding
KEY_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")

# ONEDNN_MAX_CPU_ISA caps the kernels of Paddle's oneDNN and of OpenVINO's CPU plugin alike (measured: with
# AVX2, OpenVINO fails to compile a bf16 model on a CPU with avx512_bf16), so a feature above the cap is unusable
_AVX512 = {"avx2", "fma", "avx512f"}
_ISA_CAPS = {"SSE41": set(), "AVX": set(), "AVX2": {"avx2", "fma"}, "AVX2_VNNI": {"avx2", "fma", "avx_vnni"},
             "AVX2_VNNI_2": {"avx2", "fma", "avx_vnni"}, "AVX512_CORE": _AVX512,
             "AVX512_CORE_VNNI": _AVX512 | {"avx512_vnni"},
             "AVX512_CORE_BF16": _AVX512 | {"avx512_vnni", "avx512_bf16"},
             "AVX512_CORE_FP16": _AVX512 | {"avx512_vnni", "avx512_bf16"},
             "AVX10_1_512": _AVX512 | {"avx512_vnni", "avx512_bf16"}}


def cpu_info():
    """The first processor's `key: value` lines of /proc/cpuinfo (empty where there is none)."""
    info = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not key.strip() and info:
                    break  # the blank line after the first processor
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_flags():
    """The `flags` of /proc/cpuinfo's first processor (empty set where there is none)."""
    return set(cpu_info().get("flags", "").split())


def isa_cap():
    """The ONEDNN_MAX_CPU_ISA value that caps the kernels, upper-cased, or None (no cap, or one above KEY_FLAGS)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return cap if cap in _ISA_CAPS else None


def kernel_flags():
    """cpu_flags() less the KEY_FLAGS that ONEDNN_MAX_CPU_ISA puts out of the kernels' reach."""
    flags, cap = cpu_flags(), isa_cap()
    return flags if cap is None else flags - (set(KEY_FLAGS) - _ISA_CAPS[cap])


def describe():
    """One line: the CPU's name, then which of KEY_FLAGS it has and lacks."""
    info = cpu_info()
    flags = set(info.get("flags", "").split())
    has = [f for f in KEY_FLAGS if f in flags]
    lacks = [f for f in KEY_FLAGS if f not in flags]
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info:  # VMs often say only "AMD EPYC": the family tells Zen 3 (25) from Zen 5 (26)
        name += f" (family {info['cpu family']}, model {info.get('model', '?')})"
    line = f"CPU: {name}; has {' '.join(has) or 'none of them'}; lacks {' '.join(lacks) or 'none'}"
    unusable = [f for f in has if f not in kernel_flags()]
    if unusable:
        line += f"; ONEDNN_MAX_CPU_ISA={isa_cap()} leaves {' '.join(unusable)} unused"
    return line
