"""The config loader's YAML limits (ppshitu/config.py _ConfigLoader): an alias bomb, nesting past
MAX_YAML_DEPTH, duplicate keys, YAML 1.2 floats, and -o values YAML cannot read are each one ConfigError
naming the file or the override (exit 2 through the CLIs), never a hang, a traceback or a silent literal."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ppshitu.config import MAX_YAML_DEPTH, load_config, load_yaml, parse_override
from ppshitu.errors import ConfigError
from ppshitu.schemas import INFER_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "inference" / "inference_general.yaml"


def _bomb(levels=10):
    lines = ["bomb:", "  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return CONFIG.read_text() + "\n" + "\n".join(lines) + f"\nGlobal2:\n  label_list: *a{levels - 1}\n"


def test_alias_bomb_is_refused_quickly(tmp_path):
    p = tmp_path / "bomb.yaml"
    p.write_text(_bomb())
    assert len(p.read_bytes()) < 8000
    with pytest.raises(ConfigError, match=r"bomb.yaml: .*aliases .*expand it past 100000"):
        load_yaml(p)


def test_alias_bomb_through_the_cli_exits_2_in_one_line(tmp_path):
    p = tmp_path / "bomb.yaml"
    text = CONFIG.read_text().replace("Global:", "Global:\n  label_list: *a9", 1)
    head = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    head += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    p.write_text("\n".join(head) + "\n" + text)
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "search.py"), "-c", str(p),
                           "--image", str(tmp_path / "q.jpg")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "bomb.yaml" in errors[0] and "aliases" in errors[0], proc.stderr[-2000:]


def test_small_aliases_and_merge_keys_still_load(tmp_path):
    p = tmp_path / "alias.yaml"
    p.write_text("base: &b {x: 1, y: [1, 2]}\nc:\n  <<: *b\n  x: 2\nd: *b\n")
    assert load_yaml(p) == {"base": {"x": 1, "y": [1, 2]}, "c": {"x": 2, "y": [1, 2]}, "d": {"x": 1, "y": [1, 2]}}


def test_recursive_alias_is_refused(tmp_path):
    p = tmp_path / "loop.yaml"
    p.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match=r"loop.yaml: .*recursive alias"):
        load_yaml(p)


@pytest.mark.parametrize("depth", [5000, MAX_YAML_DEPTH + 1])
def test_deep_nesting_in_an_override_is_refused(depth):
    with pytest.raises(ConfigError, match=r"^-o Global.label_list=\[\[.*nested deeper than 64") as e:
        parse_override("Global.label_list=" + "[" * depth + "]" * depth)
    assert "\n" not in str(e.value)
    assert parse_override("G.x=" + "[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH)[1] is not None


def test_deep_nesting_in_a_file_is_refused(tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("Global:\n  label_list: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"deep.yaml: .*nested deeper than 64"):
        load_yaml(p)


@pytest.mark.parametrize("text,key,line,first", [
    ("IndexProcess:\n  return_k: 5\n  return_k: 7\n", "return_k", 3, 2),
    ("IndexProcess:\n  return_k: 5\nGlobal:\n  x: 1\nIndexProcess:\n  return_k: 7\n", "IndexProcess", 5, 1),
    ("G: {a: 1, a: 2}\n", "a", 1, 1),
])
def test_duplicate_keys_are_refused_naming_both_lines(tmp_path, text, key, line, first):
    p = tmp_path / "dup.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=rf"dup.yaml: .*duplicate key '{key}' at line {line} \(first at line "
                                          rf"{first}\)") as e:
        load_yaml(p)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text,value", [("1e-3", 1e-3), ("1E5", 1e5), (".5e-2", 0.005), ("-2.5e+1", -25.0),
                                        ("0.5", 0.5), ("3", 3), ("1_000", 1000), ("-.inf", float("-inf"))])
def test_yaml_12_floats_in_overrides_and_files(tmp_path, text, value):
    assert parse_override(f"G.x={text}")[1] == value
    assert type(parse_override(f"G.x={text}")[1]) is type(value)
    p = tmp_path / "f.yaml"
    p.write_text(f"G:\n  x: {text}\n")
    assert load_yaml(p)["G"]["x"] == value


def test_score_thres_in_exponent_notation_is_accepted():
    cfg = load_config(CONFIG, ["IndexProcess.score_thres=1e-3"], INFER_SCHEMA)
    assert cfg.IndexProcess.score_thres == pytest.approx(1e-3)


@pytest.mark.parametrize("value", ["[a,", "!!python/object:os.system ls", "{a: 1", "'unclosed", "*nope"])
def test_override_values_yaml_cannot_read_are_refused(value):
    with pytest.raises(ConfigError, match=r"^-o Global.output_dir=.*not valid YAML") as e:
        parse_override(f"Global.output_dir={value}")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value,parsed", [("/tmp/out dir", "/tmp/out dir"), ("output/run-1", "output/run-1"),
                                          ("C:\\out", "C:\\out"), ("'[a,'", "[a,"), ("v1.2.3", "v1.2.3")])
def test_plain_override_strings_still_work(value, parsed):
    assert parse_override(f"Global.output_dir={value}")[1] == parsed


def test_invalid_yaml_is_one_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text(textwrap.dedent("""\
        Global:
          x: [1, 2
        """))
    with pytest.raises(ConfigError, match=r"broken.yaml: invalid YAML: .*\(line \d+, column \d+\)$") as e:
        load_yaml(p)
    assert "\n" not in str(e.value)
