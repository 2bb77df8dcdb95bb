"""Recognize the objects in images: detector -> embeddings -> gallery.

    python tools/predict_system.py -c configs/inference/inference_general.yaml -o Global.infer_imgs=PATH

PATH is an image, a directory or a list file. Prints each image's results, writes them as
JSON lines to Global.output_dir/results.jsonl, and draws labelled boxes into Global.output_dir.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppshitu.cli import config_parser, load_cli_config, run_main  # noqa: E402
from ppshitu.errors import ConfigError  # noqa: E402
from ppshitu.schemas import INFER_SCHEMA  # noqa: E402
from ppshitu.system import RecognitionSystem  # noqa: E402
from ppshitu.utils.image import list_images  # noqa: E402


def main():
    args = config_parser(__doc__.splitlines()[0]).parse_args()
    cfg = load_cli_config(args, INFER_SCHEMA)
    g = cfg.Global
    if not g.infer_imgs:
        raise ConfigError("Global.infer_imgs is required: -o Global.infer_imgs=PATH (image, directory or list file)")
    paths = list_images(g.infer_imgs)
    system = RecognitionSystem.from_config(cfg)
    os.makedirs(g.output_dir, exist_ok=True)
    failed = []

    def on_error(path, exc):
        failed.append(path)
        print(f"warning: skipped {path}: {exc}", file=sys.stderr)

    out_path = os.path.join(g.output_dir, "results.jsonl")
    start = time.perf_counter()
    with open(out_path, "w", encoding="utf-8") as out:
        for path, results in system.predict_paths(paths, batch_size=max(1, g.batch_size), on_error=on_error):
            shown = [{k: r[k] for k in ("bbox", "rec_docs", "rec_scores")} for r in results]
            print(f"{path}: {shown}")
            out.write(json.dumps({"image": path, "results": results}, ensure_ascii=False) + "\n")
            if g.save_visual:
                from ppshitu.utils.image import read_image
                from ppshitu.visualize import draw_results, save_image
                save_image(os.path.join(g.output_dir, os.path.basename(path)),
                           draw_results(read_image(path), results, font_path=g.font_path))
    elapsed = time.perf_counter() - start
    done = len(paths) - len(failed)
    print(f"{done} images recognised, {len(failed)} skipped; results in {out_path}")
    if g.enable_benchmark and done:
        print(f"benchmark: {done} images in {elapsed:.2f} s: {done / elapsed:.2f} images/s, "
              f"{1000 * elapsed / done:.1f} ms/image (decode, detection, recognition, search, drawing)")
    return 1 if failed and len(failed) == len(paths) else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
