"""One real service for the serving tests: `deploy/serve.py` in a child process with the committed demo
models (models/demo) and a gallery built from generated images by tools/build_gallery.py.

PPSHITU_SERVE_SCRIPT=<path to another serve.py> starts that one instead (with only -c/-o/--host/
--port): test_regressions.py, run that way against the stdlib server this one replaced, shows each
of its tests failing there."""
import os

import pytest

from serving_helpers import TOKEN, bench_service

# small timeouts so the slow-client tests are quick; a queue deeper than the 20 concurrent clients
# of the load test, shallower than the saturation test's 48
SERVER_ARGS = ["--queue", "24", "--header-timeout", "2", "--read-timeout", "3", "--keep-alive", "5",
               "--max-body-mb", "4", "--max-files", "16"]


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return bench_service.build_world(tmp_path_factory.mktemp("serving") / "world")


@pytest.fixture(scope="session")
def server(world):
    srv = bench_service.ServerProcess(world, token=TOKEN, args=SERVER_ARGS,
                                      script=os.environ.get("PPSHITU_SERVE_SCRIPT") or None)
    yield srv
    alive = srv.alive()
    log = srv.stderr()
    srv.stop()
    assert alive, f"the server died during the tests:\n{log[-3000:]}"
    assert "Traceback" not in log or "internal error" in log, f"unexpected traceback on the server:\n{log[-3000:]}"


@pytest.fixture(scope="session")
def new_server():
    """True unless PPSHITU_SERVE_SCRIPT points at another server (tests of new routes skip then)."""
    return not os.environ.get("PPSHITU_SERVE_SCRIPT")

