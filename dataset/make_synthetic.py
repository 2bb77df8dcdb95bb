#!/usr/bin/env python
"""Write the synthetic data sets that training, tests and the demo use instead of downloads.

    python dataset/make_synthetic.py rec --out data/rec --num-classes 100
    python dataset/make_synthetic.py cub --out data/cub            # data/cub/CUB_200_2011/...
    python dataset/make_synthetic.py scenes --out data/scenes --classes 40-69
    python dataset/make_synthetic.py all --out data/synthetic      # rec/, cub/, scenes/ under it
    python dataset/make_synthetic.py captions --out data/clip      # captioned images (dataset/captions.py)

The same --seed writes byte-identical files; see ppshitu/data/synthetic.py for the layouts.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset import synthetic  # noqa: E402


def class_ids(text):
    """'40-59,75' -> [40, ..., 59, 75]."""
    ids = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            ids += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class ids like '40-59,75', got {text!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError(f"no class ids in {text!r}")
    return ids


def _rec_options():
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("recognition set")
    g.add_argument("--num-classes", type=int, default=synthetic.DEFAULT_NUM_CLASSES)
    g.add_argument("--views-per-class", type=int, default=8)
    g.add_argument("--num-train-classes", type=int, default=None, help="default: two thirds of the classes")
    g.add_argument("--gallery-views", type=int, default=2, help="views of each test class put in the gallery")
    g.add_argument("--rec-size", type=int, default=96, help="image side in pixels")
    return p


def _cub_options():
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("mini CUB_200_2011")
    g.add_argument("--images-per-class", type=int, default=3)
    g.add_argument("--cub-size", type=int, default=128, help="longer image side in pixels")
    return p


def _scene_options():
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("scenes")
    g.add_argument("--train-scenes", type=int, default=40)
    g.add_argument("--val-scenes", type=int, default=10)
    g.add_argument("--scene-size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    g.add_argument("--objects-per-image", type=int, nargs=2, default=(1, 5), metavar=("MIN", "MAX"))
    g.add_argument("--classes", type=class_ids, default=None,
                   help="object classes that may appear, e.g. 40-69 (default: all recognition classes)")
    return p


def _caption_options():
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("captioned images (the text-image model)")
    g.add_argument("--views-per-combo", type=int, default=4, help="training images of each combination")
    g.add_argument("--heldout-views", type=int, default=2, help="images of each held-out combination")
    g.add_argument("--heldout-share", type=float, default=0.12, help="share of the combinations held out")
    g.add_argument("--caption-size", type=int, default=96, help="image side in pixels")
    return p


def write_captions(args, out):
    from dataset.captions import make_caption_set
    return [make_caption_set(out, views_per_combo=args.views_per_combo, heldout_views=args.heldout_views,
                             heldout_share=args.heldout_share, image_size=args.caption_size, seed=args.seed)]


def write_rec(args, out):
    return [synthetic.make_recognition_set(
        out, num_classes=args.num_classes, views_per_class=args.views_per_class, image_size=args.rec_size,
        num_train_classes=args.num_train_classes, gallery_views=args.gallery_views, seed=args.seed)]


def write_cub(args, out):
    return [synthetic.make_mini_cub(out, images_per_class=args.images_per_class, image_size=args.cub_size,
                                    seed=args.seed)]


def write_scenes(args, out):
    classes = args.classes or range(getattr(args, "num_classes", synthetic.DEFAULT_NUM_CLASSES))
    return [synthetic.make_scenes(out, num_images=n, image_size=args.scene_size,
                                  objects_per_image=args.objects_per_image, object_classes=classes,
                                  seed=args.seed, split=split)
            for split, n in (("train", args.train_scenes), ("val", args.val_scenes)) if n > 0]


def write_all(args, out):
    return write_rec(args, out / "rec") + write_cub(args, out / "cub") + write_scenes(args, out / "scenes")


COMMANDS = {  # name: (writer, option groups, help)
    "rec": (write_rec, [_rec_options], "recognition set with PaddleClas and PP-ShiTu gallery lists"),
    "cub": (write_cub, [_cub_options], "miniature CUB_200_2011 tree"),
    "scenes": (write_scenes, [_scene_options], "detection scenes, train and val COCO json"),
    "captions": (write_captions, [_caption_options], "captioned images, held-out attribute combinations"),
    "all": (write_all, [_rec_options, _cub_options, _scene_options], "all three, under OUT/{rec,cub,scenes}"),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (writer, groups, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, parents=[g() for g in groups])
        sub.add_argument("--out", type=Path, required=True, help="output directory")
        sub.add_argument("--seed", type=int, default=0)
        sub.set_defaults(writer=writer)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for written in args.writer(args, args.out):
        print(f"wrote {written}")


if __name__ == "__main__":
    main()
