"""No import cycle among ppshitu's modules, lazy imports included (issue 24).

A static check: every ppshitu/**/*.py is parsed and a graph is built among ppshitu modules (a package is its
__init__.py), then there must be no strongly connected component of more than one module and no module
importing itself. Edges, from the module whose file holds them:

- every `import a.b.c` and `from a.b import c`, wherever it is: module level, inside functions and
  classes, under `if`/`try` (a lazy import is an import); relative imports are resolved. `from pkg import
  name` is an edge to `pkg.name` when that is a module (a submodule), else to `pkg` (a name its __init__
  defines: its content is what is used).
- importing `a.b.c` runs the __init__ of `a` and `a.b` first: edges to those packages too, except the
  importing module's own ancestor packages (Python ran them before the importer's first line; a module
  never makes its own package's __init__ run, so `from .sibling import x` does not depend on `__init__`,
  while `from . import name_defined_in_init` does, by the rule above).
- a package __init__ that defines a module `__getattr__` re-exports lazily: every string in it that names a
  ppshitu module (its table of public name -> module, e.g. ppshitu/__init__.py's `_API`) is an edge from
  the package, counted whether or not the name is ever asked for (whoever imports the package may reach it).
- a registry entry "ppshitu.x.y:attr" (ppshitu/registry.py: imported on first lookup) is an edge from the
  module holding the string to ppshitu.x.y: naming a kind is depending on it, so a registry module must not
  be imported by the kinds it names (they import an interface module instead: infer/runtime_base.py,
  gallery/interface.py, gallery/index_methods.py, engine/backbone_base.py, engine/task.py).
- `importlib.import_module(...)` with a literal name is an edge to it; with an f-string, to every ppshitu
  module its pattern matches (cli_main's `f"{__package__}.commands.{module}"`: every command module).

Not edges: module names in other strings (`python -m ppshitu.rec.task` runs a child process, not an import).
"""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
PKG = "ppshitu"
REGISTRY_TARGET = re.compile(r"^(ppshitu(?:\.[A-Za-z_]\w*)+):[A-Za-z_][\w.]*$")
MODULE_NAME = re.compile(r"^ppshitu(?:\.[A-Za-z_]\w*)*$")


def ppshitu_sources(root=ROOT):
    """{module name: (source text, is a package __init__)} of every ppshitu/**/*.py."""
    out = {}
    for path in sorted((root / PKG).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path.read_text(encoding="utf-8"), is_pkg)
    return out


def _ancestors(module):
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _resolve(module, is_pkg, level, name):
    if level == 0:
        return name
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _pattern(node, module, is_pkg):
    """A regex of the module names an f-string passed to import_module can give."""
    package = module if is_pkg else module.rpartition(".")[0]
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(re.escape(str(value.value)))
        elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name) \
                and value.value.id in ("__package__", "__name__"):
            parts.append(re.escape(package if value.value.id == "__package__" else module))
        else:
            parts.append(r"[\w.]+")
    return re.compile("".join(parts))


def import_graph(sources):
    """{module: {imported module: (line, how)}} among the modules of `sources` (see the module docstring)."""
    graph = {}
    for module, (text, is_pkg) in sources.items():
        edges = graph.setdefault(module, {})
        tree = ast.parse(text, module)
        lazy_package = is_pkg and any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body)

        def add(target, line, how):
            if target not in sources:
                return
            if target != module or not is_pkg:  # (a package's __init__ naming itself is no import)
                edges.setdefault(target, (line, how))
            for parent in _ancestors(target):  # the packages importing `target` runs first
                if parent in sources and parent not in _ancestors(module) and parent != module:
                    edges.setdefault(parent, (line, f"{how}: runs {parent}/__init__"))

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == PKG or alias.name.startswith(PKG + "."):
                        add(alias.name, node.lineno, "import")
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, is_pkg, node.level, node.module)
                if not target or not (target == PKG or target.startswith(PKG + ".")):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    add(sub if sub in sources else target, node.lineno, "import")
            elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("importlib.import_module", "import_module") \
                    and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    add(arg.value, node.lineno, "import_module")
                elif isinstance(arg, ast.JoinedStr):
                    pattern = _pattern(arg, module, is_pkg)
                    for other in sources:
                        if pattern.fullmatch(other):
                            add(other, node.lineno, "import_module")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = REGISTRY_TARGET.match(node.value)
                if match:
                    name = match.group(1)
                    while name and name not in sources:  # "pkg.mod:Class.attr" or a dotted attribute path
                        name = name.rpartition(".")[0]
                    if name and name != module:
                        add(name, node.lineno, "registry entry")
                elif lazy_package and MODULE_NAME.match(node.value) and node.value != module:
                    add(node.value, node.lineno, "lazy re-export")
    return graph


def strongly_connected(graph):
    """Tarjan's components (iterative), each a sorted list."""
    index, low, stack, on_stack, comps, counter = {}, {}, [], set(), [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                comps.append(sorted(comp))
    return comps


def cycles(graph):
    """The import cycles: components of more than one module, and modules importing themselves."""
    found = [c for c in strongly_connected(graph) if len(c) > 1]
    found += [[m] for m in graph if m in graph[m]]
    return found


def describe(graph, component):
    """One cycle through the component, each edge with its line and kind: what the failure prints."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:  # walk inside the component until a module repeats
        step = next((t for t in graph[path[-1]] if t in members and (t == start or t not in seen)), None)
        if step is None:
            step = next(t for t in graph[path[-1]] if t in members)
        path.append(step)
        if step in seen:
            break
        seen.add(step)
    loop = path[path.index(path[-1]):]
    return "".join(f"{a} -[line {graph[a][b][0]}: {graph[a][b][1]}]-> " for a, b in zip(loop, loop[1:])) + loop[-1]


def test_no_import_cycle_among_ppshitu_modules():
    sources = ppshitu_sources()
    graph = import_graph(sources)
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(f"  {', '.join(c)}\n    {describe(graph, c)}" for c in found)
    # the graph is the real one (a parser that saw nothing would pass too)
    assert len(graph) > 100
    assert graph["ppshitu.gallery.base"]["ppshitu.gallery.gallery"][1] == "registry entry"
    assert graph["ppshitu.infer.runtime"]["ppshitu.infer.paddle_runtime"][1] == "registry entry"
    assert graph["ppshitu.gallery"]["ppshitu.gallery.gallery"][1] == "lazy re-export"
    assert "ppshitu.commands.train" in graph["ppshitu.cli_main"]                   # import_module(f"...")
    assert "ppshitu.weights.torch_legacy" in graph["ppshitu.weights"]              # a function-level import


def _graph_of(files):
    """import_graph of an in-memory package: {"pkg/a.py": source}."""
    sources = {}
    for path, text in files.items():
        parts = path[:-3].split("/")
        is_pkg = parts[-1] == "__init__"
        sources[".".join(parts[:-1] if is_pkg else parts)] = (text, is_pkg)
    return import_graph(sources)


def test_the_rule_sees_the_cycles_it_is_for():
    # a function-level import back (the runtime registry importing its runtimes to register them)
    g = _graph_of({"ppshitu/__init__.py": "", "ppshitu/infer/__init__.py": "",
                   "ppshitu/infer/runtime.py": "def names():\n    from . import paddle_runtime\n",
                   "ppshitu/infer/paddle_runtime.py": "from .runtime import Runtime\n"})
    assert cycles(g) == [["ppshitu.infer.paddle_runtime", "ppshitu.infer.runtime"]]
    assert "ppshitu.infer.runtime -[line 2: import]-> ppshitu.infer.paddle_runtime" in describe(g, cycles(g)[0])
    # a name taken from the package's own __init__, which imports the module lazily (weights <-> torch_legacy)
    g = _graph_of({"ppshitu/__init__.py": "", "ppshitu/weights/__init__.py":
                   "class WeightsError(Exception): pass\ndef read():\n    from .torch_legacy import load\n",
                   "ppshitu/weights/torch_legacy.py": "from . import WeightsError\n"})
    assert cycles(g) == [["ppshitu.weights", "ppshitu.weights.torch_legacy"]]
    # a registry entry naming a module that imports the registry
    g = _graph_of({"ppshitu/__init__.py": "", "ppshitu/gallery/__init__.py": "",
                   "ppshitu/gallery/base.py": "STORES = {'faiss': 'ppshitu.gallery.gallery:Gallery'}\n",
                   "ppshitu/gallery/gallery.py": "from .base import GalleryStore\n"})
    assert cycles(g) == [["ppshitu.gallery.base", "ppshitu.gallery.gallery"]]
    # a lazy re-export table, and a module taking a name from that package
    g = _graph_of({"ppshitu/__init__.py": "_API = {'System': 'ppshitu.system'}\ndef __getattr__(n):\n    pass\n",
                   "ppshitu/system.py": "from ppshitu import Gallery\n"})
    assert cycles(g) == [["ppshitu", "ppshitu.system"]]
    # an import from outside a package runs its __init__, which imports the importer
    g = _graph_of({"ppshitu/__init__.py": "", "ppshitu/utils.py": "from .gallery.errors import E\n",
                   "ppshitu/gallery/__init__.py": "from .store import S\n", "ppshitu/gallery/errors.py": "",
                   "ppshitu/gallery/store.py": "from ..utils import u\n"})
    assert cycles(g) == [["ppshitu.gallery", "ppshitu.gallery.store", "ppshitu.utils"]]
    # a module importing itself
    assert cycles(_graph_of({"ppshitu/__init__.py": "", "ppshitu/a.py": "def f():\n    from . import a\n"})) \
        == [["ppshitu.a"]]


def test_the_rule_sees_no_cycle_where_there_is_none():
    g = _graph_of({
        "ppshitu/__init__.py": "_API = {'Gallery': 'ppshitu.gallery'}\ndef __getattr__(n):\n    pass\n",
        # a package __init__ re-exporting its submodules, which import their siblings
        "ppshitu/gallery/__init__.py": "from .gallery import Gallery\n",
        "ppshitu/gallery/gallery.py": "from .interface import Store\nfrom . import layout\n",
        "ppshitu/gallery/interface.py": "from ..errors import E\n", "ppshitu/gallery/layout.py": "",
        # a registry naming an implementation that imports only the interface
        "ppshitu/gallery/base.py": "from .interface import Store\nR = {'faiss': 'ppshitu.gallery.gallery:Gallery'}\n",
        "ppshitu/errors.py": "",
        # a child process by module name is not an import
        "ppshitu/rec/__init__.py": "", "ppshitu/rec/export.py": "ARGS = ['-m', 'ppshitu.rec.task']\n",
        "ppshitu/rec/task.py": "from . import export\n",
    })
    assert cycles(g) == []
    assert "ppshitu.gallery" not in g["ppshitu.gallery.gallery"]         # its own package: already run
    assert "ppshitu.gallery" in g["ppshitu.rec.export"] or "ppshitu.rec.task" not in g["ppshitu.rec.export"]
