"""The package (pyproject.toml) and the `ppshitu` command: its dependencies are requirements.txt's, its data is
every non-Python file of ppshitu/, each `ppshitu <command>` has its tool's options, the tools are thin wrappers
of ppshitu/commands, and `ppshitu build_gallery` builds what `python tools/build_gallery.py` builds."""
import fnmatch
import os
import re
import runpy
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ppshitu import cli_main
from ppshitu.commands import ALIASES, COMMANDS

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _requirement_lines(text):
    return {line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()}


def test_dependencies_are_requirements_txt():
    """pyproject's dependencies + its `test` extra are requirements.txt, pin for pin; the two --no-deps suites are
    named where pip users read (pyproject's comment, the README) and installed as the Makefile does."""
    project = PYPROJECT["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    assert declared == _requirement_lines((ROOT / "requirements.txt").read_text(encoding="utf-8"))
    suites = "pip install --no-deps paddleclas==2.6.0 paddledet==2.6.0"
    assert suites in (ROOT / "pyproject.toml").read_text() and suites in (ROOT / "README.md").read_text()
    assert "--no-deps paddleclas==2.6.0 paddledet==2.6.0" in (ROOT / "Makefile").read_text()
    assert project["scripts"] == {"ppshitu": "ppshitu.cli_main:main"}


def test_package_data_covers_every_data_file():
    """Every file under ppshitu/ that is not Python (the service's page, calibration.json) goes into the wheel."""
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "ppshitu").rglob("*")
             if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert files
    for path in files:
        covered = any(path.startswith(package.replace(".", "/") + "/")
                      and any(fnmatch.fnmatch(path[len(package) + 1:], g) for g in globs)
                      for package, globs in data.items())
        assert covered, f"{path} is not in pyproject.toml's package-data: a wheel would lack it"


def _options(help_text):
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", help_text.split("\n", 1)[1]))


def _help(run, capsys):
    with pytest.raises(SystemExit) as done:
        run()
    out = capsys.readouterr().out
    assert done.value.code == 0, out
    return out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_answers_help_with_its_tools_options(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the tools put the checkout first
    module, script, _ = COMMANDS[name]
    mine = _help(lambda: cli_main.main([name, "--help"]), capsys)
    assert mine.startswith("usage: ") and "-h, --help" in mine
    if module is not None:
        assert mine.startswith(f"usage: ppshitu {name} ")
    monkeypatch.setattr(sys, "argv", [str(ROOT / script), "--help"])
    tool = _help(lambda: runpy.run_path(str(ROOT / script), run_name="__main__"), capsys)
    assert _options(mine) == _options(tool)


def test_tools_are_thin_wrappers_of_ppshitu_commands():
    for name, (module, script, _) in COMMANDS.items():
        if module is None:
            continue
        text = (ROOT / script).read_text(encoding="utf-8")
        assert f"from ppshitu.commands.{module} import cli, main" in text, script
        assert len(text.splitlines()) <= 15, f"{script}: the logic belongs in ppshitu/commands/{module}.py"
        assert (ROOT / "ppshitu" / "commands" / f"{module}.py").is_file()
    assert set(ALIASES.values()) <= set(COMMANDS)


def test_console_script_and_module_answer():
    """The installed `ppshitu` (make install: pip install -e .) and `python -m ppshitu`, as a shell runs them."""
    script = Path(sys.executable).parent / "ppshitu"
    assert script.is_file(), f"{script}: no console script; run `make install` (pip install --no-deps -e .)"
    runs = {"script": [str(script), "--help"], "module": [sys.executable, "-m", "ppshitu", "--help"],
            "version": [str(script), "--version"], "unknown": [str(script), "build-galery"],
            "alias": [sys.executable, "-m", "ppshitu", "export-model", "--help"]}
    procs = {k: subprocess.Popen(v, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for k, v in runs.items()}
    out = {k: (p.wait(120), *p.communicate()) for k, p in procs.items()}
    for key in ("script", "module"):
        code, stdout, stderr = out[key]
        assert code == 0 and all(name in stdout for name in COMMANDS), stderr
    assert out["version"][0] == 0 and out["version"][1].startswith("ppshitu ")
    assert out["unknown"][0] == 2 and "did you mean build_gallery?" in out["unknown"][2]
    assert out["alias"][0] == 0 and out["alias"][1].startswith("usage: ppshitu export ")


def test_build_gallery_command_equals_the_tool(tmp_path):
    """`ppshitu build_gallery ARGS` and `python tools/build_gallery.py ARGS` (the demo recognition model, 6 images):
    the same summary line and the same gallery (labels, paths, vectors)."""
    import numpy as np

    from dataset.synthetic import make_recognition_set
    from ppshitu.gallery import Gallery

    make_recognition_set(tmp_path / "rec", num_classes=4, views_per_class=3, image_size=64, num_train_classes=1,
                         gallery_views=2, seed=7)

    def args(index):
        return ["-c", str(ROOT / "configs/inference/build_gallery.yaml"),
                "-o", f"Global.rec_inference_model_dir={ROOT / 'models/demo/rec'}", "-o", "Global.cpu_num_threads=1",
                "-o", f"IndexProcess.image_root={tmp_path / 'rec'}", "-o", f"IndexProcess.index_dir={index}",
                "-o", f"IndexProcess.data_file={tmp_path / 'rec' / 'gallery_list.txt'}"]

    runs = {"tool": [sys.executable, str(ROOT / "tools/build_gallery.py"), *args(tmp_path / "by_tool")],
            "command": [str(Path(sys.executable).parent / "ppshitu"), "build_gallery", *args(tmp_path / "by_command")]}
    procs = {k: subprocess.Popen(v, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for k, v in runs.items()}
    out = {k: (p.wait(300), *p.communicate()) for k, p in procs.items()}
    for key, (code, _, stderr) in out.items():
        assert code == 0, f"{key}: exit {code}\n{stderr[-3000:]}"
    last = out["tool"][1].splitlines()[-1]
    assert last == out["command"][1].splitlines()[-1]
    assert last.startswith("operation=new added=6 already_present=0 unreadable=0 count=6 labels=3 index=HNSW32 "), last
    by_tool, by_command = Gallery.open(tmp_path / "by_tool"), Gallery.open(tmp_path / "by_command")
    assert by_tool.label_counts() == by_command.label_counts() and len(by_tool.labels()) == 3
    rows = [[(r["id"], r["label"], r["path"]) for r in g.records()] for g in (by_tool, by_command)]
    assert rows[0] == rows[1]
    ids = [r[0] for r in rows[0]]
    np.testing.assert_allclose(by_tool.get_vectors(ids), by_command.get_vectors(ids), atol=1e-5)
