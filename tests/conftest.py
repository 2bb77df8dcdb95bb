import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
import ppshitu  # noqa: E402,F401  (before any test imports paddle: threads, quiet import: ppshitu/paddle_import.py)


def pytest_sessionstart(session):
    """The log's first line names the CPU and the features that change kernels (and so speed and rounding): a
    failure is read against the machine it happened on. Printed in -q runs too."""
    from ppshitu.utils.cpu import describe

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(describe())
