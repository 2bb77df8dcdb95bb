"""Keep in f32 the layers that move answers, ranked by sensitivity: a cheaper accuracy control than NNCF's.

    ranked = layer_sensitivity(ov, model, quantized, items, feeds)     # [(layer, error it adds), ...] worst first
    quantized, kept = restore_until(quantize, check, ranked, target)

NNCF's quantize_with_accuracy_control ranks every quantizer by compiling the model once per quantizer and
re-running the metric (~140 compilations for the demo detector: over half an hour on 2 shared cores). Here one
pass of a few calibration images through the fp32 and the int8 model, every convolution / matmul output
exposed, ranks the layers by the relative error int8 adds at each (its output's error less its input's); then the
worst 1, 2, 4, ... layers are left in float (NNCF's ignored scope, quantized again) until the agreement check
(quantize_check) reaches the target.
"""
import logging

import numpy as np

log = logging.getLogger("ppshitu.infer")

RANK_IMAGES = 16
MAX_STEPS = 6  # 1, 2, 4, ... 32 layers back in float at most


def _exposed(ov, model, names):
    """`model` compiled in f32 with the output and data input of each named layer as extra outputs; returns
    (compiled, [(name, output index of its input, output index of its output)])."""
    m = model.clone()
    ops = {op.get_friendly_name(): op for op in m.get_ordered_ops()}
    ports, index = [], []
    for name in names:
        op = ops.get(name)
        if op is None:
            continue
        src = op.input_value(0)
        ports += [src, op.output(0)]
        index.append((name, len(ports) - 2, len(ports) - 1))
    added = m.add_outputs(ports)  # one Result per port: a port asked for twice (an input that is another
    position = {o.get_node().get_friendly_name(): k for k, o in enumerate(m.outputs)}  # layer's output) shares it
    at = [position[o.get_node().get_friendly_name()] for o in added]
    compiled = ov.Core().compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled, [(n, at[i], at[o]) for n, i, o in index]


def layer_sensitivity(ov, model, quantized, items, feeds, names):
    """[(layer, added relative error)] of the named layers, worst first, over the first RANK_IMAGES items."""
    ref, ref_idx = _exposed(ov, model, names)
    got, got_idx = _exposed(ov, quantized, names)
    common = {n for n, _, _ in ref_idx} & {n for n, _, _ in got_idx}
    ref_idx = {n: (i, o) for n, i, o in ref_idx if n in common}
    got_idx = {n: (i, o) for n, i, o in got_idx if n in common}
    err = {n: [0.0, 0.0] for n in common}
    for item in items[:RANK_IMAGES]:
        f = feeds(item)
        a, b = ref(f), got(f)
        for n in common:
            for k in (0, 1):  # input, output
                x = np.asarray(a[ref.outputs[ref_idx[n][k]]], np.float64)
                y = np.asarray(b[got.outputs[got_idx[n][k]]], np.float64)
                floor = 1e-3 * np.sqrt(x.size)  # an RMS of 1e-3: a near-silent tensor's ratio means nothing
                err[n][k] += float(np.linalg.norm(y - x) / max(np.linalg.norm(x), floor))
    return sorted(((n, (e[1] - e[0]) / RANK_IMAGES) for n, e in err.items()), key=lambda t: -t[1])


def restore_until(quantize, score, ranked, target, base_names=()):
    """Quantize again with the worst 1, 2, 4, ... ranked layers in float until score(model)["agreement"] reaches
    `target`; returns (model, its score, the layers put back in float, [(count, agreement)] tried)."""
    tried, best = [], None
    for step in range(MAX_STEPS):
        k = min(2 ** step, len(ranked))
        names = [n for n, _ in ranked[:k]]
        model = quantize(sorted(set(base_names) | set(names)))
        result = score(model)
        tried.append((k, result["agreement"]))
        log.info("int8 check with %d more layer(s) in f32: agreement %.4f (target %.4f)", k, result["agreement"],
                 target)
        if best is None or result["agreement"] > best[1]["agreement"]:
            best = (model, result, names)
        if result["agreement"] >= target or k == len(ranked):
            break
    return best[0], best[1], best[2], tried
