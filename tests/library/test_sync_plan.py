"""plan_sync (ppshitu/library/folder.py): what a folder sync does, decided from the scan, the folder state and
the gallery's items alone. Pure and fast: fabricated scan entries, state rows and gallery ids; no model, no
file read (the plan step must not touch the disk)."""
import builtins
import os

import pytest

from ppshitu.library.folder import MAX_REMOVAL, MassRemovalError, Row, SyncPlan, needs_allow, plan_sync

ROOT = "/photos"


def _row(path, gid, size=10, mtime=100, status="indexed", sha="h"):
    return Row(path, size, mtime, sha if status == "indexed" else None, gid if status == "indexed" else None,
               status)


def _indexed(n, prefix="a"):
    """n files, their state rows and the gallery ids that match them: an unchanged folder."""
    paths = [f"{prefix}/{i:03d}.jpg" for i in range(n)]
    return ({p: (10, 100) for p in paths}, {p: _row(p, i) for i, p in enumerate(paths)},
            {p: i for i, p in enumerate(paths)})


@pytest.fixture(autouse=True)
def no_disk(monkeypatch):
    """Planning reads nothing: any file access fails the test."""
    def refuse(*a, **k):
        raise AssertionError(f"plan_sync touched the disk: {a}")
    for name in ("stat", "scandir", "listdir", "lstat"):
        monkeypatch.setattr(os, name, refuse)
    monkeypatch.setattr(builtins, "open", refuse)


def test_an_unchanged_folder_plans_nothing():
    files, rows, held = _indexed(5)
    plan = plan_sync(files, rows, held)
    assert isinstance(plan, SyncPlan)
    assert plan.unchanged == 5 and plan.keep == rows
    assert not (plan.embed or plan.verify or plan.remove or plan.healed or plan.removal)
    assert plan.removal_total == 5 and not plan.needs_allow()


def test_new_changed_healed_and_gone_files():
    files, rows, held = _indexed(4)
    files["a/new.jpg"] = (5, 5)                              # not in the gallery: added
    files["a/001.jpg"] = (11, 100)                           # size differs: the hash decides
    files["a/002.jpg"] = (10, 101)                           # mtime differs: the hash decides
    held["a/003.jpg"] = 99                                   # the gallery's id is not the state's: healed
    held["b/held_only.jpg"] = 7                              # held, no file: removed
    files["b/held_no_row.jpg"] = (1, 1)
    held["b/held_no_row.jpg"] = 8                            # held, no state row (a crash): healed
    rows["c/row_only.jpg"] = _row("c/row_only.jpg", 50)      # a row, neither held nor a file: dropped
    del files["a/000.jpg"]                                   # gone: removed
    plan = plan_sync(files, rows, held)
    assert list(plan.verify) == ["a/001.jpg", "a/002.jpg"] and plan.verify["a/001.jpg"] is rows["a/001.jpg"]
    assert sorted(plan.embed) == ["a/003.jpg", "a/new.jpg", "b/held_no_row.jpg"]
    assert sorted(plan.healed) == ["a/003.jpg", "b/held_no_row.jpg"] and plan.added == ["a/new.jpg"]
    assert plan.why == {"a/003.jpg": "changed", "a/new.jpg": "added", "b/held_no_row.jpg": "changed"}
    assert plan.remove == ["a/000.jpg", "b/held_only.jpg"]
    assert plan.keep == {} and plan.unchanged == 0
    assert plan.removal == {"a/000.jpg", "b/held_only.jpg"} and plan.removal_total == 6


def test_unreadable_files_are_not_retried_until_they_change():
    files = {"x/broken.jpg": (3, 30), "x/fixed.jpg": (4, 41), "x/now_held.jpg": (5, 50)}
    rows = {p: _row(p, None, size=s, mtime=m, status="unreadable") for p, (s, m) in
            {"x/broken.jpg": (3, 30), "x/fixed.jpg": (4, 40), "x/now_held.jpg": (5, 50)}.items()}
    plan = plan_sync(files, rows, {"x/now_held.jpg": 3})
    assert plan.still_unreadable == 1 and plan.keep == {"x/broken.jpg": rows["x/broken.jpg"]}
    assert plan.added == ["x/fixed.jpg"] and plan.healed == ["x/now_held.jpg"]


def test_items_under_an_unlisted_sub_folder_are_kept_not_removed():
    files, rows, held = _indexed(4, "locked")
    files.update({"open/a.jpg": (10, 100)})
    rows["open/a.jpg"], held["open/a.jpg"] = _row("open/a.jpg", 10), 10
    held["locked/held_only.jpg"] = 11
    plan = plan_sync({"open/a.jpg": files["open/a.jpg"]}, rows, held, unlisted={"locked"})
    assert plan.unseen == set(rows) - {"open/a.jpg"} | {"locked/held_only.jpg"}
    assert plan.keep == rows and plan.unchanged == 1
    assert not plan.remove and not plan.removal and not plan.needs_allow()
    # '.' (the folder itself) is never a sub-folder whose items are kept
    assert plan_sync({}, rows, held, unlisted={"."}).remove == sorted(held)


@pytest.mark.parametrize("gone, total, refused", [(0, 4, False), (1, 4, False), (2, 4, False), (3, 4, True),
                                                  (4, 4, True), (1, 1, True), (6, 12, False), (7, 12, True)])
def test_the_mass_removal_guard(gone, total, refused):
    files, rows, held = _indexed(total)
    for p in sorted(files)[:gone]:
        del files[p]
    plan = plan_sync(files, rows, held)
    assert len(plan.remove) == gone and plan.removal_total == total
    assert plan.needs_allow() is refused
    assert needs_allow(gone, total) is refused
    if refused:
        with pytest.raises(MassRemovalError) as e:
            plan.check_removal(ROOT, "/index", allow=False)
        msg = str(e.value)
        assert f"{gone} of the {total}" in msg and "--allow-mass-removal" in msg and "Nothing was changed" in msg
        assert ("all of them" in msg) is (gone == total)
        assert sorted(held)[0] in msg
    else:
        plan.check_removal(ROOT, "/index", allow=False)
    plan.check_removal(ROOT, "/index", allow=True)          # allowed: never refused


def test_files_unreadable_at_hashing_count_towards_the_guard():
    files, rows, held = _indexed(4)
    for p in sorted(files)[:2]:
        del files[p]
    plan = plan_sync(files, rows, held)
    assert not plan.needs_allow() and plan.needs_allow(extra=["a/002.jpg"])
    with pytest.raises(MassRemovalError, match="3 of the 4"):
        plan.check_removal(ROOT, "/index", allow=False, extra=["a/002.jpg"])


def test_the_share_is_configurable():
    files, rows, held = _indexed(10)
    for p in sorted(files)[:2]:
        del files[p]
    assert not plan_sync(files, rows, held).needs_allow() and MAX_REMOVAL == 0.5
    assert plan_sync(files, rows, held, max_removal=0.1).needs_allow()


def test_a_rebuild_embeds_everything_and_guards_what_the_state_indexed():
    files, rows, held = _indexed(4)
    rows["a/bad.jpg"] = _row("a/bad.jpg", None, status="unreadable")   # not counted: never indexed
    del files["a/000.jpg"]
    plan = plan_sync(files, rows, {}, rebuild=True)
    assert plan.rebuild and plan.added == sorted(files) and not plan.healed and not plan.keep
    assert not plan.verify and not plan.remove
    assert plan.removal == {"a/000.jpg"} and plan.removal_total == 4 and not plan.needs_allow()
    plan = plan_sync({}, rows, {}, rebuild=True)
    assert plan.needs_allow()
    with pytest.raises(MassRemovalError, match="4 of the 4"):
        plan.check_removal(ROOT, "/index", allow=False)


def test_an_empty_gallery_and_state_add_everything():
    files = {"b.jpg": (1, 1), "a/x.jpg": (2, 2)}
    plan = plan_sync(files, {}, {})
    assert plan.embed == ["b.jpg", "a/x.jpg"] and plan.removal_total == 0 and not plan.needs_allow()


def test_a_moved_folder_keeps_its_relative_paths():
    files, rows, held = _indexed(3)
    plan = plan_sync(files, rows, held, root="/mnt/new", state_root="/mnt/old")
    assert plan.moved_from == "/mnt/old" and plan.unchanged == 3 and not plan.embed
    assert plan_sync(files, rows, held, root="/mnt/new", state_root="/mnt/new").moved_from is None
    assert plan_sync(files, rows, {}, rebuild=True, root="/mnt/new", state_root="/mnt/old").moved_from is None
