"""The duplicate report as files: `duplicates.json` and `duplicates.html` (one table per group, with
thumbnails in `thumbs/`), written into one folder through ppshitu.utils.outputs (never over a file
ppshitu did not write; a re-run replaces its own report)."""
import html
import os
import pathlib

import numpy as np
from PIL import Image

from ..utils.image import ImageReadError, read_image
from ..utils.outputs import OutputGuard

THUMB = 160


def _thumb(src, dst, guard):
    """Write the thumbnail of the image file `src` (read by utils.image: regular files only, under the
    pixel and byte limits); False when it cannot be read."""
    try:
        im = Image.fromarray(read_image(src, min_side=THUMB))
    except ImageReadError:
        return False
    im.thumbnail((THUMB, THUMB))
    guard.write_image(dst, np.asarray(im), quality=85)
    return True


def _uri(path):
    try:
        return pathlib.Path(os.path.abspath(path)).as_uri()
    except ValueError:
        return ""


def write_report(report, out_dir, moves=None):
    """Write duplicates.json and duplicates.html (+ thumbs/) into `out_dir`; returns their paths.
    OutputError (naming it) before anything is written when a file ppshitu did not write is in the way."""
    with OutputGuard(out_dir, "--out") as guard:
        return _write_report(report, out_dir, moves, guard)


def report_paths(report, out_dir):
    """Every file write_report writes for `report` (None: only the json and the html)."""
    members = sum(len(g["members"]) for g in report["groups"]) if report is not None else 0
    return [os.path.join(out_dir, "duplicates.json"), os.path.join(out_dir, "duplicates.html")] + \
        [os.path.join(out_dir, "thumbs", f"{n:06d}.jpg") for n in range(1, members + 1)]


def check_report(report, out_dir):
    """OutputError (naming it) when write_report would meet a file ppshitu did not write (call it before
    acting on the report, e.g. moving files)."""
    OutputGuard(out_dir, "--out").check_all(report_paths(report, out_dir))


def _write_report(report, out_dir, moves, guard):
    thumbs = os.path.join(out_dir, "thumbs")
    json_path = os.path.join(out_dir, "duplicates.json")
    html_path = os.path.join(out_dir, "duplicates.html")
    guard.check_all(report_paths(report, out_dir))
    guard.write_json(json_path, {**report, "moves": moves or []}, indent=1, ensure_ascii=False)
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Duplicates</title><style>"
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:0 0 1.6em}"
        "td{border:1px solid #ccc;padding:6px;vertical-align:top;text-align:center;font-size:12px;max-width:180px;"
        "word-break:break-all}td.keep{background:#e6f4e6}img{max-width:160px;max-height:160px}"
        "h2{font-size:15px;margin:.2em 0}.k{color:#070;font-weight:bold}.m{color:#a40}</style></head><body>",
        f"<h1>Duplicates</h1><p>{report['items']} images; {len(report['groups'])} groups "
        f"({report['exact_groups']} exact, {report['near_groups']} near); {report['duplicates']} copies beyond "
        f"the one kept per group. Near-duplicates: {e(report['rule']['text'])} "
        f"({e(str(report['rule'].get('source', '')))}), {report['k']} nearest per image; keep rule: "
        f"{e(report['keep_rule'])}.</p>"]
    if moves:
        parts.append(f"<p>{len(moves)} files were moved (see duplicates.json, <code>moves</code>).</p>")
    n = 0
    for gi, g in enumerate(report["groups"], 1):
        parts.append(f"<h2>Group {gi}: {e(g['kind'])}, {len(g['members'])} images</h2><table><tr>")
        for m in g["members"]:
            n += 1
            name = f"{n:06d}.jpg"
            ok = bool(m.get("file")) and _thumb(m["file"], os.path.join(thumbs, name), guard)
            img = f"<a href='{e(_uri(m['file']))}'><img src='thumbs/{name}'></a>" if ok else "<i>(missing)</i>"
            tag = "<span class='k'>keep</span>" if m["keep"] else "<span class='m'>duplicate</span>"
            detail = "same bytes" if m["same_bytes_as_keep"] and not m["keep"] else \
                ("" if m["keep"] else f"cosine {m['cosine_to_keep']:.3f}")
            size = f"{m['size'] / 1024:.0f} KB" if m.get("size") is not None else ""
            parts.append(f"<td class='{'keep' if m['keep'] else ''}'>{img}<br>{tag} {e(detail)}<br>"
                         f"{e(str(m['path']))}<br>{e(size)}</td>")
        parts.append("</tr></table>")
    if not report["groups"]:
        parts.append("<p>No duplicates found.</p>")
    parts.append("</body></html>")
    guard.write_text(html_path, "\n".join(parts))
    return json_path, html_path
