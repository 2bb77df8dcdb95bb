"""Every command README.md shows works as written, or is checked as far as it can be without the user's data.

The README's code blocks are parsed (```bash: one command per line, `\\` continuations joined, comments dropped;
```yaml: config snippets; ```python: the API snippet, run by tests/test_python_api.py; an indented code block fails: it
would escape this test). Each command must be listed
in COMMANDS below, so a command added or changed in the README fails here until someone decides how it is
tested:

* RUN: executed as written, in a scratch folder laid out like the repository (links to its tools, configs and
  models), on tiny generated data standing in for `make demo`'s or the user's; what a flow adds to a command
  (EXTRA: fewer epochs, fewer images, a free port) only makes it smaller, and a user path such as
  /data/CUB_200_2011 is mapped to generated data in the same layout;
* VALIDATED: needs what the user brings (CUB, their photos, GPUs, a download, a previous step that does);
  still checked: the tool exists, its --help works, the command's arguments parse with the tool's own parser,
  and the config with the command's -o overrides loads through the tool's schema (test_dry_run).

Every command gets the dry run; RUN ones are then run by the flow test named in COMMANDS.
"""
import argparse
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUN, VALIDATED = "run", "validated"

# command (as the README writes it, continuations joined, comment dropped) -> (RUN, flow) or (VALIDATED, why)
COMMANDS = {
    # "Two commands"
    "make demo": (VALIDATED, "installs into .venv; what it runs, tools/demo.py, is run by tests/system/test_demo.py"),
    "make test": (VALIDATED, "the test suite itself"),
    # "Using it", 1: CUB
    "source .venv/bin/activate": (VALIDATED, "the virtual environment `make install` creates"),
    "ln -s /data/CUB_200_2011 dataset/CUB_200_2011": (RUN, "cub"),
    "python dataset/prepare_cub.py dataset/CUB_200_2011": (RUN, "cub"),
    "python tools/train.py -c configs/rec/MobileNetV1_retrieval_CUB.yaml":
        (VALIDATED, "CUB and a download of ImageNet weights; the recipe on a miniature CUB: tests/rec/test_rec_cub.py"),
    "python tools/eval.py -c configs/rec/MobileNetV1_retrieval_CUB.yaml "
    "-o Global.pretrained_model=output/RecModel/best_model": (VALIDATED, "the CUB training's weights"),
    "python tools/export_model.py -c configs/rec/MobileNetV1_retrieval_CUB.yaml "
    "-o Global.pretrained_model=output/RecModel/best_model --out inference/rec":
        (VALIDATED, "the CUB training's weights; export is run by tests/system/test_demo.py (tools/demo.py)"),
    "python tools/train.py -c configs/rec/MobileNetV1_retrieval_CUB.yaml "
    "-o Global.checkpoints=output/RecModel/epoch_5": (VALIDATED, "a CUB checkpoint; resuming: tests/engine"),
    "python tools/train.py -c configs/det/picodet_lcnet_x2_5_640_mainbody.yaml":
        (VALIDATED, "a detection set and a download of ImageNet weights; detector training: tests/det"),
    # 2: a gallery of the user's images with the exported model (here models/demo/rec stands in for it)
    "python tools/build_gallery.py -c configs/inference/build_gallery.yaml -o IndexProcess.image_root=gallery/ "
    "-o IndexProcess.index_dir=gallery/index -o IndexProcess.data_file=gallery/labels.txt": (RUN, "gallery"),
    "python tools/build_gallery.py -c configs/inference/build_gallery.yaml -o IndexProcess.image_root=gallery/ "
    "-o IndexProcess.index_dir=gallery/index -o IndexProcess.data_file=gallery/more.txt "
    "-o IndexProcess.index_operation=append": (RUN, "gallery"),
    "python tools/build_gallery.py -c configs/inference/build_gallery.yaml -o IndexProcess.image_root=gallery/ "
    "-o IndexProcess.index_dir=gallery/index -o IndexProcess.data_file=gallery/old.txt "
    "-o IndexProcess.index_operation=remove": (RUN, "gallery"),
    # 3 and 5: the demo's models and data (`make demo`), recognised and served
    "python tools/build_gallery.py -c configs/inference/inference_general.yaml": (RUN, "demo"),
    "python tools/predict_system.py -c configs/inference/inference_general.yaml -o Global.infer_imgs=photos/":
        (RUN, "demo"),
    "python tools/eval_system.py -c configs/inference/inference_general.yaml --scenes data/demo/scenes/val.json":
        (RUN, "demo"),
    "PPSHITU_TOKEN=secret python deploy/serve.py -c configs/inference/inference_general.yaml --port 8866":
        (RUN, "demo"),
    "python tools/calibrate_gallery.py -c configs/inference/inference_general.yaml --precision 0.95":
        (VALIDATED, "the demo's gallery (make demo); run on generated galleries by tests/gallery/test_calibrate.py"),
    "python tools/gallery_doctor.py -c configs/inference/inference_general.yaml":
        (VALIDATED, "the demo's gallery (make demo); run on generated galleries by tests/gallery/test_gallery_doctor.py"),
    # 4
    "python tools/predict_system.py -c configs/inference/inference_general.yaml -o Global.inference_backend=openvino "
    "-o Global.precision=bf16 -o Global.infer_imgs=photos/":
        (VALIDATED, "a CPU with native bf16; the runtime: tests/infer/test_openvino_runtime.py"),
    "python tools/quantize.py -c configs/inference/inference_general.yaml --model rec --calib gallery/labels.txt":
        (VALIDATED, "minutes of NNCF calibration; quantizing with its check and report, --out's default beside the "
                    "model and auto's choice: tests/infer/test_precision_auto.py"),
    # 6: a photo library: the user's folder and images
    "python tools/index_folder.py -c configs/inference/inference_general.yaml --dir ~/Pictures --index lib/":
        (VALIDATED, "the user's photos; run on generated folders by tests/library/test_index_folder.py"),
    "python tools/search.py -c configs/inference/inference_general.yaml --index lib/ --image query.jpg --k 10":
        (VALIDATED, "the user's photos; run by tests/library/test_search_similarity.py"),
    "python tools/similarity.py -c configs/inference/inference_general.yaml a.jpg b.jpg":
        (VALIDATED, "the user's images; run by tests/library/test_search_similarity.py"),
    "python tools/find_duplicates.py -c configs/inference/inference_general.yaml --dir ~/Pictures":
        (VALIDATED, "the user's photos; run by tests/library/test_find_duplicates.py"),
    # "Text search, and models from ONNX": the user's exports (torch, weights); the paths they feed are run on
    # tiny ONNX encoders and tokenizers the tests build
    "python deploy/export_onnx_encoders.py open_clip --model ViT-B-32 --pretrained laion2b_s34b_b79k --out clip_onnx":
        (VALIDATED, "PyTorch, open_clip and the weights (none here); its files' import: tests/textsearch/test_import_model_errors.py"),
    "python tools/import_model.py --image-encoder clip_onnx/image_encoder.onnx --text-encoder clip_onnx/text_encoder.onnx "
    "--tokenizer clip_onnx/tokenizer.json --context-length 77 --resize-short 224 --crop 224 "
    "--mean 0.48145466 0.4578275 0.40821073 --std 0.26862954 0.26130258 0.27577711 --out models/clip_vit_b32":
        (VALIDATED, "the OpenCLIP export; a BPE text-image import: tests/textsearch/test_text_search_cli.py"),
    "python tools/index_folder.py -c configs/inference/inference_general.yaml "
    "-o Global.rec_inference_model_dir=models/clip_vit_b32 --dir ~/Pictures --index lib_clip/":
        (VALIDATED, "the imported OpenCLIP and the user's photos; an imported model indexing: "
                    "tests/textsearch/test_text_search_cli.py"),
    "python tools/search.py -c configs/inference/inference_general.yaml "
    "-o Global.rec_inference_model_dir=models/clip_vit_b32 --index lib_clip/ --text \"a red car on a street\"":
        (VALIDATED, "the OpenCLIP gallery; text search: tests/textsearch/test_text_search_cli.py"),
    "python tools/import_model.py --image-encoder cnclip/vit-b-16.img.fp32.onnx --text-encoder cnclip/vit-b-16.txt.fp32.onnx "
    "--tokenizer Chinese-CLIP/cn_clip/clip/vocab.txt --context-length 52 --input-size 224 "
    "--mean 0.48145466 0.4578275 0.40821073 --std 0.26862954 0.26130258 0.27577711 --out models/cn_clip_vit_b16":
        (VALIDATED, "Chinese-CLIP's export; a WordPiece text-image import: tests/textsearch/test_text_search_service.py"),
    "python tools/search.py -c configs/inference/inference_general.yaml "
    "-o Global.rec_inference_model_dir=models/cn_clip_vit_b16 --index lib_cn/ --text \"红色的汽车\"":
        (VALIDATED, "a Chinese-CLIP gallery; Chinese text search: tests/textsearch/test_text_search_cli.py"),
    "python deploy/export_onnx_encoders.py dinov2 --model dinov2_vits14 --out dinov2_onnx":
        (VALIDATED, "PyTorch and torch.hub's weights (none here); an image-only import: "
                    "tests/textsearch/test_import_model_errors.py"),
    "python tools/import_model.py --image-encoder dinov2_onnx/image_encoder.onnx --resize-short 256 --crop 224 "
    "--mean 0.485 0.456 0.406 --std 0.229 0.224 0.225 --out models/dinov2_small":
        (VALIDATED, "the DINOv2 export; an image-only import with resize + crop: "
                    "tests/textsearch/test_import_model_errors.py"),
    # "A small text-image model trained here": the same flow on a tiny captioned set runs in
    # tests/clip/test_clip_train_export.py (train, export, import, index, search --text); bench/bench_clip.py runs it whole
    "python dataset/make_synthetic.py captions --out data/clip":
        (VALIDATED, "~1 min of images; a tiny captioned set is written by tests/clip/test_clip_captions.py"),
    "python tools/train.py -c configs/clip/clip_effnet_lite0_demo.yaml":
        (VALIDATED, "minutes on 2 cores; a few steps of the recipe: tests/clip/test_clip_train_export.py"),
    "python tools/export_model.py -c configs/clip/clip_effnet_lite0_demo.yaml "
    "-o Global.pretrained_model=output/clip_demo/latest --out inference/clip_demo_onnx":
        (VALIDATED, "the training's weights; the export of a tiny training: tests/clip/test_clip_train_export.py"),
    "python tools/import_model.py --image-encoder inference/clip_demo_onnx/image_encoder.onnx "
    "--text-encoder inference/clip_demo_onnx/text_encoder.onnx --tokenizer inference/clip_demo_onnx/tokenizer.json "
    "--tokenizer-kind bpe --input-size 96 --interpolation bilinear --scale 0.00392156862745098 "
    "--mean 0.4980392156862745 0.4980392156862745 0.4980392156862745 "
    "--std 0.5019607843137255 0.5019607843137255 0.5019607843137255 --outputs-normalized --out models/clip_demo":
        (VALIDATED, "the export above; the export's import_args imported by tests/clip/test_clip_train_export.py"),
    "python tools/index_folder.py -c configs/inference/inference_general.yaml "
    "-o Global.rec_inference_model_dir=models/clip_demo --dir data/clip/images/heldout --index lib_shapes/":
        (VALIDATED, "the imported model; indexing with it: tests/clip/test_clip_train_export.py"),
    "python tools/search.py -c configs/inference/inference_general.yaml "
    "-o Global.rec_inference_model_dir=models/clip_demo --index lib_shapes/ --text \"a photo of a blue dotted arrow\"":
        (VALIDATED, "the gallery above; search --text on the tiny model: tests/clip/test_clip_train_export.py"),
    "python bench/bench_clip.py": (VALIDATED, "15-25 min on 2 shared cores; its results: bench/results/bench_clip.md"),
    # "Multi-GPU and multi-node training"
    "python -m paddle.distributed.launch --gpus 0,1,2,3 tools/train.py "
    "-c configs/rec/EfficientNetLite0_retrieval_CUB.yaml -o Global.device=gpu": (VALIDATED, "GPUs and CUB"),
    "python -m paddle.distributed.launch --ips 10.0.0.1,10.0.0.2 --gpus 0,1,2,3,4,5,6,7 tools/train.py "
    "-c configs/rec/EfficientNetLite0_retrieval_CUB.yaml -o Global.device=gpu": (VALIDATED, "two GPU machines"),
    "python dataset/make_synthetic.py rec --out data/synthetic/rec": (RUN, "distributed"),
    "python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py -c configs/rec/demo_rec.yaml "
    "-o Global.device=cpu": (RUN, "distributed"),
    # "The `ppshitu` command and the Python API"
    "pip install .": (VALIDATED, "make install does it (-e); the package's metadata and data: tests/test_package.py"),
    "pip install --no-deps paddleclas==2.6.0 paddledet==2.6.0": (VALIDATED, "the Makefile's install step"),
    "ppshitu --help": (VALIDATED, "run by tests/test_package.py"),
    "ppshitu build_gallery -c configs/inference/inference_general.yaml":
        (VALIDATED, "tools/build_gallery.py's command, run in the demo flow; the two compared by tests/test_package.py"),
}

# what a flow adds to a README command: only ever smaller (data, epochs, steps) or a free port
EXTRA = {
    "python dataset/make_synthetic.py rec --out data/synthetic/rec":
        ["--num-classes", "12", "--views-per-class", "4", "--rec-size", "64"],
    "python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py -c configs/rec/demo_rec.yaml "
    "-o Global.device=cpu": ["-o", "Global.epochs=1", "-o", "Global.max_iters_per_epoch=1",
                             "-o", "DataLoader.Train.sampler.batch_size=8"],
}
# the repository's parts a scratch folder links to; dataset/ is a real folder of links, so that
# `ln -s ... dataset/CUB_200_2011` there never writes into the checkout
LINKED = ("tools", "configs", "ppshitu", "deploy", "models")
MAX_SECONDS = 240  # any one command


# ----------------------------------------------------------------------------------------------- parsing
def code_blocks(text):
    """[(language, first line number, lines)] of the fenced blocks; and the line numbers of indented code blocks
    outside them (a 4-space indented line after a blank line), which this test would not see."""
    blocks, indented, fence = [], [], None
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        if fence is not None:
            if line.strip() == "```":
                blocks.append(fence)
                fence = None
            else:
                fence[2].append(line)
        elif line.startswith("```"):
            fence = (line[3:].strip(), n + 1, [])
        elif re.match(r"( {4}|\t)\S", line) and n > 1 and not lines[n - 2].strip():
            indented.append(n)
    assert fence is None, f"README.md: the code block opened at line {fence[1] - 1} is never closed"
    return blocks, indented


def shell_commands(lines):
    """One string per command: continuation lines joined, comments and blank lines dropped, spaces collapsed."""
    out, pending = [], ""
    for line in lines:
        code = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].rstrip()
        if code.endswith("\\"):
            pending += code[:-1] + " "
            continue
        command = " ".join((pending + code).split())
        pending = ""
        if command:
            out.append(command)
    assert not pending, f"a continuation line ends the block: {pending!r}"
    return out


def readme_commands():
    blocks, _ = code_blocks(README.read_text(encoding="utf-8"))
    return [c for lang, _, lines in blocks if lang == "bash" for c in shell_commands(lines)]


def split_command(command):
    """(environment assignments, argv)."""
    words = shlex.split(command)
    env = {}
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words


def python_target(argv):
    """For `python ...`: (launcher options, script path, script arguments); the launcher options are those of
    `python -m paddle.distributed.launch` before the script, else []."""
    assert argv[0] == "python", argv
    if argv[1] == "-m":
        assert argv[2] == "paddle.distributed.launch", f"an unknown module in the README: {argv[2]}"
        i = next(i for i, a in enumerate(argv[3:], 3) if a.endswith(".py"))
        return argv[3:i], argv[i], argv[i + 1:]
    return [], argv[1], argv[2:]


def test_readme_code_blocks_are_fenced_with_known_languages():
    blocks, indented = code_blocks(README.read_text(encoding="utf-8"))
    assert not indented, (f"README.md lines {indented}: an indented code block; fence it (```bash or ```yaml) "
                          f"so that tests/test_readme.py checks it")
    assert {lang for lang, _, _ in blocks} <= {"bash", "yaml", "python"}, [lang for lang, _, _ in blocks]
    assert len(readme_commands()) >= 20


def test_every_readme_command_is_classified():
    found = readme_commands()
    unknown = [c for c in found if c not in COMMANDS]
    assert not unknown, ("README.md commands that tests/test_readme.py does not know; add each to COMMANDS, "
                         "run on tiny data (RUN) or validated (VALIDATED, saying why):\n" + "\n".join(unknown))
    stale = [c for c in COMMANDS if c not in found]
    assert not stale, "COMMANDS lists commands README.md no longer has:\n" + "\n".join(stale)
    assert {flow for kind, flow in COMMANDS.values() if kind == RUN} == set(FLOWS)
    assert set(EXTRA) <= {c for c, (kind, _) in COMMANDS.items() if kind == RUN}


# ----------------------------------------------------------------------------------------------- dry run
class _Parsed(Exception):
    pass


def _schema_of(script):
    from ppshitu.schemas import INFER_SCHEMA, TRAIN_SCHEMA

    text = script.read_text(encoding="utf-8")
    command = re.search(r"^from ppshitu\.commands\.(\w+) import", text, re.M)  # a thin tool: its command's code
    if command:
        text = (ROOT / "ppshitu" / "commands" / f"{command.group(1)}.py").read_text(encoding="utf-8")
    found = [s for name, s in (("TRAIN_SCHEMA", TRAIN_SCHEMA), ("INFER_SCHEMA", INFER_SCHEMA)) if name in text]
    assert len(found) <= 1, f"{script}: which schema?"
    return found[0] if found else None


def dry_run(script, args, monkeypatch, capsys):
    """Run `script` in this process up to its argument parsing, with the tool's own parser (a bad or missing
    argument fails here), then load its -c config with the -o overrides through the tool's schema."""
    from ppshitu.config import load_config

    real_parse = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        raise _Parsed(real_parse(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the tools put the repository first
    try:
        runpy.run_path(str(script), run_name="__main__")
    except _Parsed as e:
        parsed = e.args[0]
    except SystemExit as e:
        pytest.fail(f"{script.relative_to(ROOT)} {' '.join(args)}: the tool's parser refused it (exit {e.code}): "
                    f"{capsys.readouterr().err.strip()}")
    else:
        pytest.fail(f"{script.relative_to(ROOT)} never parsed its arguments")
    schema = _schema_of(script)
    if schema is not None and hasattr(parsed, "config"):  # a benchmark may load a recipe itself, without -c
        config = ROOT / parsed.config
        assert config.is_file(), f"{parsed.config}: no such config"
        load_config(config, parsed.override, schema)  # raises on an unknown key or a bad value
    return parsed


def launcher_options():
    import importlib.util

    paddle_dir = Path(importlib.util.find_spec("paddle").submodule_search_locations[0])  # does not import paddle
    source = (paddle_dir / "distributed" / "launch" / "context" / "args_envs.py").read_text(encoding="utf-8")
    return set(re.findall(r"[\"'](--[a-z_]+)[\"']", source))


def makefile_targets():
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M))


def configs_reading(prefix_word):
    """Train configs whose text names `prefix_word`, with their dataset paths."""
    out = {}
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        if prefix_word in text:
            out[path] = re.findall(r"(?:image_root|cls_label_path|anno_path):\s*(\S+)", text)
    return out


def _short(command):
    words = [w for w in command.split() if not w.startswith("-") and w != "python"]
    return re.sub(r"[^\w./=]+", "_", " ".join(words[:3]))[:70]


@pytest.mark.parametrize("command", list(COMMANDS), ids=[f"{i:02d}-{_short(c)}" for i, c in enumerate(COMMANDS)])
def test_dry_run(command, monkeypatch, capsys):
    kind, why = COMMANDS[command]
    env, argv = split_command(command)
    assert set(env) <= {"PPSHITU_TOKEN"}, env
    if argv[0] == "make":
        assert argv[1] in makefile_targets(), f"Makefile has no target {argv[1]}"
    elif argv[0] == "source":
        assert argv[1] == ".venv/bin/activate"
        assert re.search(r"^VENV \?= \.venv$", (ROOT / "Makefile").read_text(), re.M)  # where make install puts it
    elif argv[0] == "pip":
        assert argv[1] == "install", argv
        if argv[2:] == ["."]:
            assert (ROOT / "pyproject.toml").is_file()
        else:  # the two suites the Makefile installs without their pins
            assert " ".join(argv[2:]) in (ROOT / "Makefile").read_text(encoding="utf-8"), argv
    elif argv[0] == "ppshitu":
        from ppshitu import cli_main

        if argv[1].startswith("-"):
            assert cli_main.main(argv[1:]) == 0
        else:  # the command's tool, through its own parser and schema
            name = cli_main.resolve(argv[1])
            assert name, f"ppshitu has no command {argv[1]}"
            dry_run(ROOT / cli_main.COMMANDS[name][1], argv[2:], monkeypatch, capsys)
    elif argv[0] == "ln":
        assert argv[1] == "-s" and len(argv) == 4
        target = argv[3].rstrip("/")
        readers = configs_reading(Path(target).name)
        assert readers, f"no config reads {target}"
        for config, paths in readers.items():
            assert paths and all(p.lstrip("./").startswith(target + "/") for p in paths), (config, paths)
    else:
        launcher, script, args = python_target(argv)
        unknown = [a for a in launcher if a.startswith("--") and a not in launcher_options()]
        assert not unknown, f"paddle.distributed.launch has no option {unknown}"
        assert (ROOT / script).is_file(), f"{script}: no such file"
        dry_run(ROOT / script, args, monkeypatch, capsys)
    if kind == VALIDATED:  # a test named as covering the command must exist
        for covering in re.findall(r"tests/[\w/]+\.py", why):
            assert (ROOT / covering).is_file(), covering


def test_the_checks_catch_what_a_user_would_hit(monkeypatch, capsys):
    """The parsing and the dry run themselves: a continuation, a comment, an indented block; a misspelled key,
    an unknown flag, a missing config, each refused."""
    from ppshitu.errors import ConfigError

    text = "x\n\n    indented\n```bash\na \\\n  --b c   # note\n# only a comment\nd#e\n```\n"
    (block,), indented = code_blocks(text)
    assert indented == [3] and shell_commands(block[2]) == ["a --b c", "d#e"]
    train = ROOT / "tools" / "train.py"
    with pytest.raises(ConfigError, match="epochss"):
        dry_run(train, ["-c", "configs/rec/demo_rec.yaml", "-o", "Global.epochss=3"], monkeypatch, capsys)
    with pytest.raises(pytest.fail.Exception, match="refused"):
        dry_run(train, ["-c", "configs/rec/demo_rec.yaml", "--nope"], monkeypatch, capsys)
    with pytest.raises(AssertionError, match="no such config"):
        dry_run(train, ["-c", "configs/rec/missing.yaml"], monkeypatch, capsys)


def readme_scripts():
    scripts = set()
    for command in COMMANDS:
        _, argv = split_command(command)
        if argv[0] == "python":
            scripts.add(python_target(argv)[1])
    return sorted(scripts)


def test_every_tool_the_readme_names_answers_help():
    """`python TOOL --help` as a user runs it: exits 0 with a usage line (run in parallel: one interpreter each)."""
    procs = {s: subprocess.Popen([sys.executable, s, "--help"], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
             for s in readme_scripts()}
    for script, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "usage:" in out, f"{script} --help: exit {proc.returncode}\n{err[-2000:]}"


def test_yaml_snippets_are_valid_config():
    """Each line of a ```yaml block sets keys of one section: applied to the serving config, it validates."""
    from ppshitu.config import load_config
    from ppshitu.schemas import INFER_SCHEMA

    blocks, _ = code_blocks(README.read_text(encoding="utf-8"))
    snippets = [line for lang, _, lines in blocks if lang == "yaml" for line in lines if line.strip()]
    assert snippets
    for line in snippets:
        data = yaml.safe_load(line)
        overrides = [f"{section}.{key}={value}" for section, keys in data.items() for key, value in keys.items()]
        load_config(ROOT / "configs/inference/inference_general.yaml", overrides, INFER_SCHEMA)


def test_files_the_readme_names_exist():
    """Inline code naming a file or folder of the repository (`tools/x.py`, `bench/results/y.md`, a `python X.py`
    or `python -m module` command) names one that exists."""
    text = README.read_text(encoding="utf-8")
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    top = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} - {"data", "output"}
    not_ours = {"deploy/python/predict_system.py"}  # PaddleClas's, named for compatibility
    missing = []
    for span in spans:
        for word in span.split():
            if word.startswith("ppshitu.") and span.startswith("python -m"):
                if not (ROOT / (word.replace(".", "/") + ".py")).is_file():
                    missing.append(word)
            elif "/" in word and word.split("/")[0] in top and not re.search(r"[{}*]|\.\.\.", word):
                if word not in not_ours and not (ROOT / word).exists():
                    missing.append(word)
    assert not missing, f"README.md names files that do not exist: {missing}"


# ----------------------------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A scratch folder laid out like the repository (links to its tools, configs, models ...), with a HOME."""
    root = tmp_path_factory.mktemp("readme")
    for name in LINKED:
        (root / name).symlink_to(ROOT / name, target_is_directory=True)
    (root / "dataset").mkdir()
    for entry in (ROOT / "dataset").iterdir():
        if entry.name != "__pycache__":
            (root / "dataset" / entry.name).symlink_to(entry)
    (root / "home").mkdir()
    return root


def sandbox_env(sandbox, extra=None):
    env = {k: v for k, v in os.environ.items() if k != "PPSHITU_TOKEN"}
    return {**env, "HOME": str(sandbox / "home"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(extra or {})}


def command_argv(command, sandbox, substitute=None):
    env, argv = split_command(command)
    argv = [str(sandbox / "home") + a[1:] if a == "~" or a.startswith("~/") else a for a in argv]  # as a shell would
    argv = [(substitute or {}).get(a, a) for a in argv]
    if argv[0] == "python":
        argv[0] = sys.executable
    return env, argv + EXTRA.get(command, [])


def run_readme(command, sandbox, substitute=None):
    """Run a README command as written (plus EXTRA) in the scratch folder; returns its output."""
    assert COMMANDS[command][0] == RUN
    env, argv = command_argv(command, sandbox, substitute)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=sandbox, env=sandbox_env(sandbox, env), capture_output=True, text=True,
                          timeout=MAX_SECONDS)
    assert proc.returncode == 0, (f"{command}\nexit {proc.returncode} after {time.perf_counter() - start:.0f} s\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def flow_commands(flow):
    """The flow's commands, in README order."""
    return [c for c in readme_commands() if COMMANDS.get(c) == (RUN, flow)]


def test_flow_cub(sandbox):
    """Step 1's data wiring: link CUB where the CUB configs read it, write the lists; every path those configs
    read then exists (the training itself: VALIDATED)."""
    from dataset.synthetic import make_mini_cub

    make_mini_cub(sandbox / "userdata", images_per_class=1, image_size=48)
    user_cub = str(sandbox / "userdata" / "CUB_200_2011")
    for command in flow_commands("cub"):
        run_readme(command, sandbox, substitute={"/data/CUB_200_2011": user_cub})
    for config, paths in configs_reading("CUB_200_2011").items():
        for p in paths:
            assert (sandbox / p).exists(), f"{config.name}: {p} missing after README step 1"
    first = (sandbox / "dataset/CUB_200_2011/train_list.txt").read_text().split()[0]
    assert (sandbox / "dataset/CUB_200_2011" / first).is_file()  # list paths are relative to image_root


def _write_list(path, rows):
    path.write_text("".join(f"{rel}\t{label}\n" for rel, label in rows), encoding="utf-8")


def test_flow_gallery(sandbox):
    """Step 2: build, append, remove with build_gallery.yaml (models/demo/rec stands in for inference/rec)."""
    from dataset.synthetic import make_recognition_set

    rec = sandbox / "gallery"
    make_recognition_set(rec, num_classes=4, views_per_class=2, image_size=64, num_train_classes=1, gallery_views=1,
                         seed=5)
    (sandbox / "inference").mkdir(exist_ok=True)
    (sandbox / "inference" / "rec").symlink_to(ROOT / "models" / "demo" / "rec", target_is_directory=True)
    images = sorted(p.relative_to(rec).as_posix() for p in (rec / "images").rglob("*.jpg"))
    by_class = {}
    for rel in images:
        by_class.setdefault(rel.split("/")[1], []).append(rel)
    (a, a_views), (b, b_views), (c, c_views) = sorted(by_class.items())[:3]
    _write_list(rec / "labels.txt", [(r, a) for r in a_views] + [(r, b) for r in b_views])
    _write_list(rec / "more.txt", [(r, c) for r in c_views])
    _write_list(rec / "old.txt", [(a_views[0], a)])
    new, append, remove = flow_commands("gallery")
    assert "added=4" in run_readme(new, sandbox)
    assert "added=2" in run_readme(append, sandbox)
    assert "count=5" in run_readme(remove, sandbox)
    assert (rec / "index" / "CURRENT").is_file()


@pytest.fixture(scope="module")
def demo_data(sandbox):
    """What `make demo` leaves for inference_general.yaml, in miniature: data/demo/rec and data/demo/scenes."""
    from dataset.synthetic import make_recognition_set, make_scenes

    rec = sandbox / "data" / "demo" / "rec"
    make_recognition_set(rec, num_classes=6, views_per_class=3, image_size=64, num_train_classes=4,
                         gallery_views=2, seed=0)
    make_scenes(sandbox / "data" / "demo" / "scenes", num_images=2, image_size=(120, 160), objects_per_image=(1, 2),
                object_classes=[4, 5], seed=1, split="val")
    photos = sandbox / "photos"
    photos.mkdir()
    for image in sorted((sandbox / "data" / "demo" / "scenes" / "images").glob("*.jpg")):
        shutil.copy(image, photos / image.name)
    return sandbox


def test_flow_demo(demo_data):
    """Steps 3 and 5 after `make demo`: build the demo gallery, recognise photos/, score the scenes, serve."""
    build, predict, evaluate, serve = flow_commands("demo")
    assert "count=4" in run_readme(build, demo_data)
    run_readme(predict, demo_data)
    assert list((demo_data / "output" / "predict_system").rglob("*.jpg"))  # drawn results, beside no input
    out = run_readme(evaluate, demo_data)
    assert re.search(r"^f1\s+\d", out, re.M)
    check_serving(serve, demo_data)


def check_serving(command, sandbox):
    """deploy/serve.py as the README starts it (its port replaced by any free one): /health and the page answer,
    writes are enabled by the token and refused without it."""
    env, argv = command_argv(command, sandbox, substitute={"8866": "0"})
    proc = subprocess.Popen(argv, cwd=sandbox, env=sandbox_env(sandbox, env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []

    def read():
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + MAX_SECONDS
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            url = next((m.group(1) for m in map(re.compile(r"serving on (http://\S+)").search, list(lines)) if m),
                       None)
            time.sleep(0.2)
        assert url, "the server did not start:\n" + "".join(lines)[-3000:]
        health = json.loads(urllib.request.urlopen(url + "/health", timeout=30).read())
        assert health["status"] == "ok" and health["gallery_size"] == 4 and health["writes_enabled"]
        assert b"<html" in urllib.request.urlopen(url + "/", timeout=30).read().lower()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url + "/api/labels/x", method="DELETE"), timeout=30)
        assert refused.value.code in (401, 403)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_flow_distributed(sandbox):
    """The 2-process CPU training on the synthetic set the README makes first (where demo_rec.yaml reads it)."""
    make, launch = flow_commands("distributed")
    run_readme(make, sandbox)
    run_readme(launch, sandbox)
    saved = sandbox / "output" / "demo_rec" / "RecModel"
    assert (saved / "latest.pdparams").is_file(), sorted(p.name for p in saved.parent.rglob("*"))
    assert "epoch 1 done" in (sandbox / "log" / "workerlog.0").read_text()


FLOWS = {"cub": test_flow_cub, "gallery": test_flow_gallery, "demo": test_flow_demo,
         "distributed": test_flow_distributed}
