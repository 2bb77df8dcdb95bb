"""ppshitu: open-set image recognition by retrieval (mainbody detection -> embedding -> gallery)."""
import os

# `import paddle` sets OMP_NUM_THREADS=1 when it is unset, which halves CPU training
# speed on a 2-core machine; default to all cores unless the user chose otherwise.
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

__version__ = "0.1.0"
