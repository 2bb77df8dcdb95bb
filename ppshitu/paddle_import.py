"""What `import paddle` does to the process, set right once for every tool: installed by `import ppshitu`
(ppshitu/__init__.py), it applies to whichever module imports paddle first.

Threads. Paddle's import reads OMP_NUM_THREADS (paddle/base/__init__.py, `__bootstrap__`): above 1 it prints
"WARNING: OMP_NUM_THREADS set to N, not 1 ... PLEASE USE OMP_NUM_THREADS WISELY" to stderr; unset, it writes 1
there, and Intel OpenMP (libiomp5, which Paddle's kernels, MKL and oneDNN all run on, and which reads the variable
at its first parallel region, after that import) then runs every CPU kernel on one thread: half the training
speed on 2 cores. So the variable is taken away while paddle's `__init__` runs and put back as it was right after,
and the thread count is given through Paddle's own API instead, `paddle.base.core.set_num_threads` (MKL's and
OpenMP's counts): the variable's value where one is set (by the user, or Global.num_threads through
`ppshitu.cli.apply_threads`), all cores otherwise. Child processes and OpenMP runtimes loaded later (FAISS's) see
the variable as the user left it, not Paddle's 1.

glog's INFO lines (Paddle's C++ log: "New Executor is Running" whenever a static program runs, as in an export):
GLOG_minloglevel=1 unless the user set it.

"No ccache found": a UserWarning paddle.utils.cpp_extension issues on every `import paddle`, about compiling C++
extensions (which ppshitu never does); ignored by its message, from that module only.
"""
import functools
import importlib.abc
import importlib.util
import os
import sys
import warnings

VAR = "OMP_NUM_THREADS"


def thread_count(value):
    """The CPU threads for a value of OMP_NUM_THREADS (None: unset): its first level, else all cores."""
    try:
        n = int(str(value).split(",")[0])
    except ValueError:
        n = 0
    return n if n >= 1 else (os.cpu_count() or 1)


class _PaddleLoader(importlib.abc.Loader):
    """paddle's own loader, with OMP_NUM_THREADS hidden while the package's `__init__` runs."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_source, get_resource_reader, ...: paddle's loader answers
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # glog's INFO lines ("I1207 ... pir_interpreter.cc] New Executor is Running ...", at every static
        # program a trace or an export runs) are read off GLOG_minloglevel when libpaddle loads: 1 keeps
        # warnings and errors. A value the user set wins.
        os.environ.setdefault("GLOG_minloglevel", "1")
        chosen = os.environ.pop(VAR, None)
        try:
            self._loader.exec_module(module)
        finally:
            if chosen is None:
                os.environ.pop(VAR, None)
            else:
                os.environ[VAR] = chosen
        module.base.core.set_num_threads(thread_count(chosen))


class _PaddleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "paddle":
            return None
        uninstall()  # once: the rest of the import machinery finds paddle as usual
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _PaddleLoader(spec.loader)
        return spec


def uninstall():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _PaddleFinder)]


def install():
    """Before paddle is imported (a no-op after: then its import has read the variable already)."""
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning,
                            module=r"paddle\.utils\.cpp_extension\.extension_utils")
    # BatchNorm in training mode says so on every train run (paddle/nn/layer/norm.py): how BatchNorm works, not
    # something the user did
    warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance",
                            category=UserWarning, module=r"paddle\.nn\.layer\.norm")
    if "paddle" not in sys.modules and not any(isinstance(f, _PaddleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PaddleFinder())


def _twice(x):
    return x + x


@functools.cache  # once per process, as the warning
def spend_pir_out_warning():
    """Before a model is traced to a PIR program (export): Paddle 3.3 logs "W... eager_utils.cc:3584] Paddle
    static graph(PIR) not support input out tensor for now!!!!!" once per process (std::call_once in
    Check_PIR_not_support_out) the first time a static-graph op is called with an `out` keyword, and its own
    `x + y` (paddle.add) always passes `out=None`: every export printed it, about nothing the model does.
    That one-time line is spent here, on a one-line function traced with stderr (fd 2) pointed at /dev/null
    for just that trace; any other warning of the real trace still shows."""
    import paddle

    if not paddle.framework.use_pir_api():
        return  # the legacy program (FLAGS_enable_pir_api=0) has no such check
    fn = paddle.jit.to_static(_twice, input_spec=[paddle.static.InputSpec([1], "float32")], full_graph=True)
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        fn.concrete_program  # noqa: B018  (traces it)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
