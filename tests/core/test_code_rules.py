"""Project-wide rules that are cheap to check statically."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = [p for d in ("ppshitu", "tools", "dataset", "deploy", "bench") for p in (ROOT / d).rglob("*.py")]


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            yield node.func.id, node.lineno


def test_no_eval_or_exec_anywhere():
    bad = [f"{p.relative_to(ROOT)}:{line} {name}()" for p in SOURCES
           for name, line in _calls(ast.parse(p.read_text(), str(p))) if name in ("eval", "exec")]
    assert not bad, f"eval/exec found: {bad}"


def _pickle_violations(tree, where):
    """pickle.load/loads calls (they resolve any global), and Unpickler subclasses without a find_class
    that restricts what they resolve."""
    bad = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("load", "loads")
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("pickle", "cPickle")):
            bad.append(f"{where}:{node.lineno} pickle.{node.func.attr}()")
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("Unpickler") for b in node.bases):
            if not any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in node.body):
                bad.append(f"{where}:{node.lineno} class {node.name} has no find_class")
        if (isinstance(node, ast.Call) and ast.unparse(node.func) in ("pickle.Unpickler", "Unpickler")):
            bad.append(f"{where}:{node.lineno} a plain Unpickler")
    return bad


def test_no_unrestricted_pickle_loading():
    bad = [v for p in SOURCES for v in _pickle_violations(ast.parse(p.read_text(), str(p)), p.relative_to(ROOT))]
    assert not bad, f"unrestricted pickle loading: {bad}"
    # the rule itself catches what it is for
    assert _pickle_violations(ast.parse("import pickle\npickle.loads(b'')"), "x")
    assert _pickle_violations(ast.parse("class U(pickle.Unpickler):\n    pass"), "x")
    assert not _pickle_violations(ast.parse("class U(pickle.Unpickler):\n    def find_class(s, m, n): 0"), "x")
