"""The duplicate report as files: `duplicates.json` and `duplicates.html` (one table per group, with
thumbnails in `thumbs/`), written into one folder."""
import html
import json
import os
import pathlib

from PIL import Image

THUMB = 160


def _thumb(src, dst):
    try:
        with Image.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB, THUMB))
            im.save(dst, "JPEG", quality=85)
        return True
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def _uri(path):
    try:
        return pathlib.Path(os.path.abspath(path)).as_uri()
    except ValueError:
        return ""


def write_report(report, out_dir, moves=None):
    """Write duplicates.json and duplicates.html (+ thumbs/) into `out_dir`; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    thumbs = os.path.join(out_dir, "thumbs")
    os.makedirs(thumbs, exist_ok=True)
    json_path = os.path.join(out_dir, "duplicates.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump({**report, "moves": moves or []}, f, indent=1, ensure_ascii=False)
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
            ok = bool(m.get("file")) and _thumb(m["file"], os.path.join(thumbs, name))
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
    html_path = os.path.join(out_dir, "duplicates.html")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return json_path, html_path
