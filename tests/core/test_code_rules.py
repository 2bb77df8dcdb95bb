"""Project-wide rules that are cheap to check statically."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = [p for d in ("ppshitu", "tools", "dataset", "deploy", "bench") for p in (ROOT / d).rglob("*.py")]


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            yield node.func.id, node.lineno


def test_sources_exist():
    assert any(p.parts[-2] == "ppshitu" for p in SOURCES)


def test_no_eval_or_exec_anywhere():
    bad = [f"{p.relative_to(ROOT)}:{line} {name}()" for p in SOURCES
           for name, line in _calls(ast.parse(p.read_text(), str(p))) if name in ("eval", "exec")]
    assert not bad, f"eval/exec found: {bad}"


def test_no_pickle_loading_outside_the_restricted_migration():
    bad = []
    for p in SOURCES:
        text = p.read_text()
        if ("pickle.load" in text or "pickle.loads" in text) and "Unpickler" not in text:
            bad.append(str(p.relative_to(ROOT)))
    assert not bad, f"unrestricted pickle loading in {bad}"
