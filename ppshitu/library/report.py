"""The duplicate report as files: `duplicates.json` and `duplicates.html` (thumbnails in `thumbs/`),
written into one folder through ppshitu.utils.outputs (never over a file ppshitu did not write; a
re-run replaces its own report).

duplicates.html is a review page that decides. Each group shows its images (thumbnails as the EXIF
orientation shows them), the suggested keeper (highest resolution, then largest file, then most EXIF
fields), what verification measured against it, and a keep / move choice per image; per group, "keep
all" and "move all but the suggested keeper". Duplicate groups start as "move all but the keeper",
similar groups as "keep all" (they are shown, never moved by default). The page never lets a group
lose its last kept image. "Export decisions" saves `decisions.json` (and shows it, to copy): per image
its path, file, the size, mtime and sha256 the report recorded, and the action. Then

    python tools/find_duplicates.py --apply decisions.json --move-to DIR

moves the images marked `move` (never deletes; never the last copy of a group; refuses the whole
file, moving nothing, when any listed file changed since the report).
"""
import html
import json
import os

from ..utils.outputs import OutputGuard, file_uri, write_thumbnail

THUMB = 160


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


def _size(n):
    if n is None:
        return ""
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1024:.0f} KB"


def _evidence(m):
    if m.get("keep") or m.get("evidence_to_keep") is None:
        if m.get("same_bytes_as_keep") and not m.get("keep"):
            return "same bytes as the keeper"
        return ""
    e = m["evidence_to_keep"]
    how = f"{e['inliers']} inliers" if e.get("aligned") == "features" else \
        (f"whole-frame alignment (ECC {e['ecc']:.2f})" if e.get("aligned") == "frame" else "not aligned")
    local = e.get("local")
    return (f"{m.get('verdict_to_keep') or '-'}: {how}, overlap {e.get('overlap') or 0:.0%}, worst tile "
            f"{(local if local is not None else 1):.1%} disagreeing; cosine {m.get('cosine_to_keep', 0):.3f}")


SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('report-data').textContent);
  const status = document.getElementById('status');
  const radios = () => Array.from(document.querySelectorAll('input.choice'));
  function groupKeeps(g) {
    return Array.from(document.querySelectorAll('section.group[data-group="' + g + '"] input.choice[value="keep"]'))
      .filter(r => r.checked).length;
  }
  function setFile(file, action) {   // one file can show in two groups (a keeper also in a similar group)
    radios().filter(r => r.dataset.file === file && r.value === action).forEach(r => { r.checked = true; });
    document.querySelectorAll('figure.member[data-file="' + file + '"]').forEach(f => { f.dataset.action = action; });
  }
  function groupsOf(file) {
    return Array.from(new Set(radios().filter(r => r.dataset.file === file).map(r => r.dataset.group)));
  }
  function safeSet(file, action) {
    const before = radios().filter(r => r.dataset.file === file && r.checked).map(r => r.value)[0];
    setFile(file, action);
    const bad = groupsOf(file).filter(g => groupKeeps(g) === 0);
    if (bad.length) {
      setFile(file, before || 'keep');
      status.textContent = 'Group ' + bad.join(', ') + ' would keep none of its images: the last copy is never moved.';
      status.dataset.state = 'refused';
      return false;
    }
    status.textContent = '';
    status.dataset.state = 'ok';
    return true;
  }
  radios().forEach(r => r.addEventListener('change', () => { if (r.checked) safeSet(r.dataset.file, r.value); }));
  document.querySelectorAll('button.keep-all').forEach(b => b.addEventListener('click', () => {
    document.querySelectorAll('section.group[data-group="' + b.dataset.group + '"] figure.member')
      .forEach(f => safeSet(f.dataset.file, 'keep'));
  }));
  document.querySelectorAll('button.move-others').forEach(b => b.addEventListener('click', () => {
    const figs = Array.from(document.querySelectorAll('section.group[data-group="' + b.dataset.group + '"] figure.member'));
    figs.filter(f => f.dataset.suggested === '1').forEach(f => safeSet(f.dataset.file, 'keep'));
    figs.filter(f => f.dataset.suggested !== '1').forEach(f => safeSet(f.dataset.file, 'move'));
  }));
  function decisions() {
    const chosen = {};
    radios().filter(r => r.checked).forEach(r => { chosen[r.dataset.file] = r.value; });
    return {format: data.decisions_format, report_id: data.report_id, folder: data.folder,
            exported: new Date().toISOString(),
            groups: data.groups.map(g => ({id: g.id, tier: g.tier, members: g.members.map(m => {
              const out = Object.assign({}, m, {action: chosen[m.fid] || 'keep'});
              delete out.fid;
              return out;
            })}))};
  }
  document.getElementById('export').addEventListener('click', () => {
    const d = decisions();
    const empty = d.groups.filter(g => !g.members.some(m => m.action === 'keep'));
    if (empty.length) { status.textContent = 'Refused: a group keeps nothing.'; status.dataset.state = 'refused'; return; }
    const text = JSON.stringify(d, null, 1);
    const box = document.getElementById('decisions-json');
    box.value = text;
    box.hidden = false;
    const moving = d.groups.reduce((n, g) => n + g.members.filter(m => m.action === 'move').length, 0);
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([text], {type: 'application/json'}));
    a.download = 'decisions.json';
    document.body.appendChild(a);
    a.click();
    a.remove();
    status.textContent = 'Exported decisions.json: ' + moving + ' image(s) to move. Apply with: ' +
      'python tools/find_duplicates.py --apply decisions.json --move-to DIR';
    status.dataset.state = 'exported';
  });
  document.body.dataset.ready = '1';
})();
"""

STYLE = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}section.group{border:1px solid #ccc;border-radius:6px;"
    "margin:0 0 1.4em;padding:.6em}section.group[data-tier=similar]{border-style:dashed}h2{font-size:15px;margin:.2em 0 .5em}"
    ".members{display:flex;flex-wrap:wrap;gap:10px}figure.member{margin:0;width:190px;font-size:12px;padding:6px;"
    "border-radius:4px;background:#f6f6f6;word-break:break-all}figure.member[data-action=keep]{background:#e6f4e6}"
    "figure.member[data-action=move]{background:#fbe9e0}img{max-width:170px;max-height:170px;display:block;margin:auto}"
    ".badge{color:#070;font-weight:bold}.ev{color:#555}.toolbar{position:sticky;top:0;background:#fff;padding:.5em 0;"
    "border-bottom:1px solid #ddd;margin-bottom:1em}#status[data-state=refused]{color:#b00}"
    "textarea{width:100%;height:10em;font-family:monospace;font-size:11px}button{margin-left:.5em}")


def _write_report(report, out_dir, moves, guard):
    thumbs = os.path.join(out_dir, "thumbs")
    json_path = os.path.join(out_dir, "duplicates.json")
    html_path = os.path.join(out_dir, "duplicates.html")
    guard.check_all(report_paths(report, out_dir))
    guard.write_json(json_path, {**report, "moves": moves or []}, indent=1, ensure_ascii=False)
    from .duplicates import DECISIONS_FORMAT, default_decisions

    e = html.escape
    dups = [g for g in report["groups"] if g.get("tier", "duplicate") == "duplicate"]
    sims = [g for g in report["groups"] if g.get("tier") == "similar"]
    rule = report.get("rule") or {}
    cal = report.get("calibration") or {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Duplicates</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Duplicates</h1><p>{report['items']} images: {len(dups)} groups of duplicates ({report.get('exact_groups', 0)} "
        f"exact, {report.get('near_groups', 0)} edited copies), {report.get('duplicates', 0)} copies beyond the one kept "
        f"per group; {len(sims)} groups of similar images (the same scene or object, not the same picture: shown, "
        f"kept unless you choose otherwise).</p>",
        f"<p>Same picture, edited: {e(str(rule.get('text', '')))} ({e(str(rule.get('source', '')))}). "
        f"{'Calibration: ' + e(cal['fallback']) + '. ' if cal.get('fallback') else ''}"
        f"Candidates: the {report.get('k')} nearest images by embedding, cosine >= {report.get('candidate_floor')}. "
        f"Groups: {e(str(report.get('linkage', '')))}. Suggested keeper: {e(str(report.get('keep_rule')))}.</p>",
        "<div class='toolbar'><button id='export'>Export decisions</button> <span id='status'></span>"
        "<textarea id='decisions-json' readonly hidden></textarea></div>"]
    if moves:
        parts.append(f"<p>{len(moves)} files were moved (see duplicates.json, <code>moves</code>).</p>")
    n = 0
    files = {}
    for g in report["groups"]:
        gid = g.get("id")
        tier = g.get("tier", "duplicate")
        title = "duplicates: the same picture" + (" (identical files)" if g["kind"] == "exact" else ", edited") \
            if tier == "duplicate" else "similar: the same scene or object, different pictures"
        parts.append(f"<section class='group' data-group='{gid}' data-tier='{tier}'><h2>Group {gid}: {e(title)}, "
                     f"{len(g['members'])} images <button class='keep-all' data-group='{gid}'>keep all</button>"
                     f"<button class='move-others' data-group='{gid}'>move all but the suggested keeper</button></h2>"
                     f"<div class='members'>")
        for mi, m in enumerate(g["members"]):
            n += 1
            name = f"{n:06d}.jpg"
            ok = bool(m.get("file")) and write_thumbnail(m["file"], os.path.join(thumbs, name), guard, THUMB)
            img = f"<a href='{e(file_uri(m['file']))}'><img src='thumbs/{name}' alt=''></a>" if ok else "<i>(missing)</i>"
            suggested = m.get("keep") or (tier == "similar" and mi == 0)
            fid = files.setdefault(m.get("file") or m["path"], f"f{len(files)}")
            action = m.get("action") or "keep"
            res = f"{m['width']} x {m['height']}" if m.get("width") else ""
            exif = f"{m.get('exif_fields', 0)} EXIF fields" if m.get("width") else ""
            rid = f"g{gid}m{mi}"
            parts.append(
                f"<figure class='member' data-file='{fid}' data-suggested='{int(bool(suggested))}' data-action='{action}'>"
                f"{img}<figcaption>{'<span class=badge>suggested keeper</span><br>' if suggested else ''}"
                f"{e(str(m['path']))}<br>{e(res)} &middot; {e(_size(m.get('size')))} &middot; {e(exif)}<br>"
                f"<span class='ev'>{e(_evidence(m))}</span><br>"
                f"<label><input type='radio' class='choice' name='{rid}' value='keep' data-file='{fid}' "
                f"data-group='{gid}'{' checked' if action == 'keep' else ''}> keep</label> "
                f"<label><input type='radio' class='choice' name='{rid}' value='move' data-file='{fid}' "
                f"data-group='{gid}'{' checked' if action == 'move' else ''}> move</label></figcaption></figure>")
        parts.append("</div></section>")
    if not report["groups"]:
        parts.append("<p>No duplicates found.</p>")
    data = default_decisions(report)
    page_data = {"decisions_format": DECISIONS_FORMAT, "report_id": data["report_id"], "folder": data["folder"],
                 "groups": [{"id": g["id"], "tier": g["tier"],
                             "members": [{**{k: v for k, v in m.items() if k != "action"},
                                          "fid": files[m.get("file") or m["path"]]} for m in g["members"]]}
                            for g in data["groups"]]}
    blob = json.dumps(page_data, ensure_ascii=False).replace("</", "<\\/")
    parts.append(f"<script type='application/json' id='report-data'>{blob}</script><script>{SCRIPT}</script>"
                 "</body></html>")
    guard.write_text(html_path, "\n".join(parts))
    return json_path, html_path
