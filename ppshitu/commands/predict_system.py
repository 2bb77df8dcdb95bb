"""Recognize the objects in images: detector -> embeddings -> gallery.

    python tools/predict_system.py -c configs/inference/inference_general.yaml -o Global.infer_imgs=PATH

PATH is an image, a directory or a list file (one image path per line). Prints each image's
results, writes them as JSON lines to Global.output_dir/results.jsonl, and draws labelled boxes
into Global.output_dir, at each image's path relative to the input folder (so same-named images
in different folders stay distinct). An output that would land on an input image, or on any file
ppshitu did not write there (ppshitu/utils/outputs.py: a re-run replaces only its own earlier
drawings), is refused before anything runs.
"""
import json
import os
import sys
import time

from ppshitu.cli import config_parser, load_cli_config, run_main
from ppshitu.errors import ConfigError
from ppshitu.schemas import INFER_SCHEMA
from ppshitu.system import RecognitionSystem
from ppshitu.utils.image import list_images, set_max_image_pixels
from ppshitu.utils.text import printable  # (a file name with a newline stays on its line)
from ppshitu.utils.outputs import OutputError, OutputGuard
from ppshitu.visualize import output_paths


def main(argv=None):
    args = config_parser(__doc__.splitlines()[0]).parse_args(argv)
    cfg = load_cli_config(args, INFER_SCHEMA)
    g = cfg.Global
    if not g.infer_imgs:
        raise ConfigError("Global.infer_imgs is required: -o Global.infer_imgs=PATH (image, directory or list file)")
    set_max_image_pixels(g.max_image_pixels)  # every read in this process, drawing included
    paths = list_images(g.infer_imgs)
    out_dir = os.path.abspath(g.output_dir)
    root = os.path.abspath(g.infer_imgs) if os.path.isdir(g.infer_imgs) else None
    guard = OutputGuard(out_dir, "Global.output_dir")  # output_dir an existing file: one clear error
    if root is not None and out_dir != root and out_dir.startswith(root + os.sep):
        # the images under an output_dir inside the input folder are not inputs (earlier drawings, mostly)
        kept = [p for p in paths if not os.path.abspath(p).startswith(out_dir + os.sep)]
        others = [p for p in paths if p not in kept and not guard.is_own(p)]
        if len(kept) < len(paths):
            print(f"note: {len(paths) - len(kept)} images under Global.output_dir {g.output_dir} are not "
                  f"inputs ({len(paths) - len(kept) - len(others)} earlier drawings"
                  + (f"; {len(others)} not written by ppshitu, e.g. {printable(others[0])}: move them out of "
                     f"the output folder to recognise them" if others else "") + ")", file=sys.stderr)
        paths = kept
        if not paths:
            raise ConfigError(f"Global.infer_imgs {g.infer_imgs}: no images outside Global.output_dir")
    out_path = os.path.join(out_dir, "results.jsonl")
    # every write goes through the guard: never over an input, nor over any file ppshitu did not write
    guard.inputs |= {os.path.realpath(p) for p in [*paths, g.infer_imgs]}
    drawn = dict(zip(paths, output_paths(paths, out_dir, root))) if g.save_visual else {}  # refuses overwrites
    guard.check_all([out_path, *drawn.values()])  # before any model loads
    system = RecognitionSystem.from_config(cfg)
    failed, not_drawn = [], []

    def on_error(path, exc):
        failed.append(path)
        print(f"warning: skipped {printable(path)}: {str(exc) or type(exc).__name__}", file=sys.stderr)

    start = time.perf_counter()
    with guard, guard.open_text(out_path) as out:
        for path, results, rgb in system.predict_paths(paths, batch_size=g.batch_size, on_error=on_error,
                                                       with_images=True):
            shown = [{k: r[k] for k in ("bbox", "rec_docs", "rec_scores")} for r in results]
            print(f"{printable(path)}: {shown}")
            line = {"image": path, "results": results}
            if g.save_visual:
                from ppshitu.visualize import draw_results
                try:
                    line["drawn"] = guard.write_image(drawn[path], draw_results(rgb, results, font_path=g.font_path))
                except OutputError as e:  # a file put there during the run: left alone
                    not_drawn.append(path)
                    line["drawn"] = None
                    print(f"warning: not drawn: {e}", file=sys.stderr)
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    elapsed = time.perf_counter() - start
    done = len(paths) - len(failed)
    print(f"{done} images recognised, {len(failed)} skipped; results in {out_path}"
          + (f"; {len(not_drawn)} drawings not written (see the warnings)" if not_drawn else ""))
    if g.enable_benchmark and done:
        print(f"benchmark: {done} images in {elapsed:.2f} s: {done / elapsed:.2f} images/s, "
              f"{1000 * elapsed / done:.1f} ms/image (decode, detection, recognition, search, drawing)")
    return 1 if failed and len(failed) == len(paths) else 0


def cli(argv=None):
    """`ppshitu predict_system ARGS`, as `python tools/predict_system.py ARGS` runs: an expected error is one line,
    exit status 2; otherwise the exit status main() returns."""
    sys.exit(run_main(lambda: main(argv)))
