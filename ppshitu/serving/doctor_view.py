"""The gallery doctor (ppshitu/gallery/doctor.py) for the service: GET /api/gallery/doctor and the /doctor page.

Computed on demand from the stored vectors (no model runs) and cached by the gallery's published version: a
second request of the same version is answered from the cache, a write (a new version) recomputes. A store
without versions (version None) is diagnosed anew on every request. One diagnosis runs at a time; requests
arriving meanwhile wait for it and share its answer.

Items are answered as the service's other routes answer them (id, label, file name, thumbnail URL): never the
server's paths.
"""
import os
import threading

from ..gallery.doctor import diagnose
from ..gallery.neighbours import gallery_arrays

ITEM_LISTS = ("suspected_mislabels", "outliers")


def public_item(it):
    """A doctor's item as the API shows items: the file name, not the server's path."""
    path = it.get("path")
    out = {"id": it["id"], "label": it["label"], "name": os.path.basename(path) if path else None,
           "thumbnail": f"/api/items/{it['id']}/thumbnail"}
    for k, v in it.items():
        if k not in ("id", "label", "path", "file", "neighbours"):
            out[k] = v
    if "neighbours" in it:
        out["neighbours"] = [public_item(n) for n in it["neighbours"]]
    return out


def public_report(report):
    """The report with every item answered by public_item (its findings and figures unchanged)."""
    out = {k: v for k, v in report.items() if k not in ITEM_LISTS + ("same_image_two_labels", "root")}
    for key in ITEM_LISTS:
        out[key] = [public_item(it) for it in report.get(key, [])]
    out["same_image_two_labels"] = [{**d, "items": [public_item(it) for it in d["items"]]}
                                    for d in report.get("same_image_two_labels", [])]
    return out


class DoctorView:
    """The doctor's report of the catalog's gallery, cached by (version, k)."""

    def __init__(self, catalog):
        self.catalog = catalog
        self._lock = threading.Lock()
        self._cached = None  # ((version, k), report)
        self.computed = 0     # diagnoses run (the tests read it: the cache is used)

    def report(self, k=3):
        with self._lock:
            with self.catalog._lock:  # the catalog's store object is shared: read it under its lock
                g = self.catalog._fresh()
                key = (g.version, int(k))
                if self._cached is not None and key[0] is not None and self._cached[0] == key:
                    return self._cached[1]
                items = gallery_arrays(g)
                higher, dist = g.higher_is_better, g.manifest.get("dist_type")
            report = diagnose(items, higher, k=k, root=self.catalog.image_root)
            report.update(version=key[0], dist_type=dist)
            answer = public_report(report)
            self.computed += 1
            self._cached = (key, answer)
            return answer
