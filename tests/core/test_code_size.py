"""No function or method in ppshitu/ is over MAX_LINES lines (issue 24): a longer one is split into well-named
helpers. Counted from its `def` line to its last line (docstring and comments included, decorators not); a
nested function counts within its parent and on its own."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAX_LINES = 80

# Functions still over the limit ("path:qualified name"), none now: add one only with the reason beside it.
ALLOWED = set()


def long_functions(tree, limit=MAX_LINES):
    """[(qualified name, lines)] of the functions and methods in `tree` longer than `limit` lines."""
    out = []

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = child.end_lineno - child.lineno + 1
                if lines > limit:
                    out.append((prefix + child.name, lines))
                walk(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")
            else:
                walk(child, prefix)
    walk(tree, "")
    return out


def offenders():
    """{"path:qualified name": lines} over MAX_LINES in ppshitu/."""
    found = {}
    for path in sorted((ROOT / "ppshitu").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for name, lines in long_functions(ast.parse(path.read_text(encoding="utf-8"), rel)):
            found[f"{rel}:{name}"] = lines
    return found


def test_no_function_in_ppshitu_is_over_80_lines():
    bad = {k: n for k, n in offenders().items() if k not in ALLOWED}
    assert not bad, (f"functions over {MAX_LINES} lines (split them into well-named helpers):\n" +
                     "\n".join(f"  {k}: {n} lines" for k, n in sorted(bad.items())))


def test_the_rule_counts_what_it_should():
    def source(body_lines):
        return "def f():\n" + "".join(f"    x = {i}\n" for i in range(body_lines))
    assert long_functions(ast.parse(source(MAX_LINES - 1))) == []             # 80 lines with its def
    assert long_functions(ast.parse(source(MAX_LINES))) == [("f", MAX_LINES + 1)]
    method = "class C:\n" + "".join("    " + line + "\n" for line in source(MAX_LINES).splitlines())
    assert long_functions(ast.parse(method)) == [("C.f", MAX_LINES + 1)]
    nested = "def outer():\n" + "".join("    " + line + "\n" for line in source(MAX_LINES).splitlines())
    assert long_functions(ast.parse(nested)) == [("outer", MAX_LINES + 2), ("outer.f", MAX_LINES + 1)]
    assert long_functions(ast.parse("async " + source(MAX_LINES))) == [("f", MAX_LINES + 1)]
