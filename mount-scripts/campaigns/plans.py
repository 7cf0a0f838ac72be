#!/usr/bin/python3
"""The campaign's fault plans: their control lines, what they mean, how they
are applied and ended (writes to the mount's control file), and whether (how
often) they fired.

A plan "fires" when the mount's events show it acting: an injection with an
errno (the capacity model's ENOSPC included), or a write dropped, stalled,
shortened or delayed. A run whose plan never fired tested nothing.
"""
import json, os

import mounts

# name: (control line, GLOB stands for the application's data files; description)
PLANS = {
    "baseline": ("", "no fault (control run)"),
    "wb-eio": ("fail writeback EIO count=1", "the next writeback fails with EIO, once"),
    "wb-enospc": ("fail writeback ENOSPC count=1", "the next writeback fails with ENOSPC, once"),
    "wb-eio-data": ("fail writeback EIO count=1 path=GLOB",
                    "the next writeback of the main data files fails with EIO, once"),
    "fsync-eio": ("fail fsync,fdatasync EIO count=1",
                  "the next fsync/fdatasync reply is EIO, once (after the data was written)"),
    "flush-eio": ("fail flush EIO", "every close() (FLUSH) fails with EIO during the fault window"),
    "capacity": ("capacity USED+HEADROOM",
                 "the disk is full: the capacity is set to the space used when the fault starts "
                 "plus a tenth of what the fault window is about to write (4-16 KiB)"),
    "stall": ("stall writeback", "writeback stalls for 3 s, then is released"),
    "selftest-drop": ("drop writeback path=GLOB",
                      "SELF-TEST: writebacks of the data files are acknowledged and dropped until the "
                      "crash (a silent loss the checker must catch)"),
    "selftest-seeded": ("", "SELF-TEST: no fault; one key deleted and one set back to an older value "
                            "behind the app's back"),
}
# Plans whose loss must be caught: a verdict of "correct" is a failed self-test.
SELF_TESTS = ("selftest-drop", "selftest-seeded")
# Event actions that show a plan acting (besides "fail" with an errno).
ACTING = ("drop", "stall", "short", "delay")


class UnknownPlan(ValueError):
    pass


def lines(plan, glob, redefined=None):
    """The control lines of `plan` (custom:LINE is LINE itself); redefined:
    {plan: line} replaces a plan's own line (to test the campaign itself)."""
    if plan.startswith("custom:"):
        return [plan[len("custom:"):]]
    if plan not in PLANS:
        raise UnknownPlan("campaign: unknown plan %s (plans: %s)" % (plan, ", ".join(PLANS)))
    line = (redefined or {}).get(plan, PLANS[plan][0])
    return [line.replace("GLOB", glob)] if line else []


def describe(plan):
    if plan.startswith("custom:"):
        return plan[len("custom:"):]
    return PLANS[plan][1]


def fault_expected(plan):
    """True when the run must show the plan acting (everything but the control run)."""
    return bool(plan) and plan != "baseline"


def capacity_headroom(window_bytes):
    """Free space left when the disk fills: a tenth of what the fault window
    writes (values alone, before any journal or log overhead), 4 to 16 KiB.
    Far less than the window writes, so the disk fills inside the window."""
    return max(4096, min(16384, window_bytes // 10))


def fired(event_lines):
    """How the plan acted, from the events file's lines: {"total": N, "EIO": n, "drop": n, ...}.
    Capacity changes and releases are not the plan acting."""
    counts = {"total": 0}
    for line in event_lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        action = e.get("action")
        if action == "fail" and e.get("errno"):
            what = e.get("errno_name") or "errno %d" % e["errno"]
        elif action in ACTING:
            what = action
        else:
            continue
        counts[what] = counts.get(what, 0) + 1
        counts["total"] += 1
    return counts


def fired_in_file(path):
    try:
        with open(path) as f:
            return fired(f)
    except OSError:
        return {"total": 0}


def fired_text(counts):
    """'EIO x1, drop x40' (or 'nothing')."""
    parts = ["%s x%d" % (k, v) for k, v in sorted(counts.items()) if k != "total"]
    return ", ".join(parts) or "nothing"


# ---------------------------------------------------------------- applying plans

def apply(mnt, plan, glob, rundir, window_bytes, redefined=None):
    """Arms the plan on the mount; RUNDIR/fault-applied.txt and the result say what was applied."""
    todo = lines(plan, glob, redefined)
    if todo == ["capacity USED+HEADROOM"]:
        mounts.control(mnt, "capacity 1024G")   # turns the model on: it counts the space used now
        used = mounts.capacity_used(mnt)
        if used is None:
            raise RuntimeError("cannot read the capacity model's used bytes of %s" % mnt)
        todo = ["capacity %d" % (used + capacity_headroom(window_bytes))]
    with open(os.path.join(rundir, "fault-applied.txt"), "w") as f:
        f.write("\n".join(todo) + "\n")
    if todo:
        mounts.control(mnt, *todo)
    return todo


END_LINES = ("clear", "capacity off", "release")


def end(mnt, plan=""):
    """Ends the fault window; what was done."""
    if plan == "selftest-drop":
        # The loss lasts until the crash: a later rewrite of the same pages
        # (a checkpoint) would repair it and the self-test would prove nothing.
        return "kept armed until the crash"
    mounts.control(mnt, *END_LINES)
    return ", ".join(END_LINES)
