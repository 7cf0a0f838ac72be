#!/usr/bin/python3
"""The campaign's fault plans: their control lines, what they mean, how they
are applied and ended, and whether (how often) they fired.

  plans.py lines PLAN GLOB          print the plan's control lines (exit 2: unknown plan)
  plans.py describe PLAN            one line for people
  plans.py inject FAULTFS MNT PLAN GLOB RUNDIR WINDOW_BYTES
                                    apply the plan (RUNDIR/fault-applied.txt says what was applied)
  plans.py end FAULTFS MNT [PLAN]   end the fault window
  plans.py fired EVENTS             print the fired counts of an events file (JSON)

A plan "fires" when the mount's events show it acting: an injection with an
errno (the capacity model's ENOSPC included), or a write dropped, stalled,
shortened or delayed. A run whose plan never fired tested nothing.
"""
import json, os, re, subprocess, sys

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


def lines(plan, glob):
    """The control lines of `plan` (custom:LINE is LINE itself)."""
    if plan.startswith("custom:"):
        return [plan[len("custom:"):]]
    if plan not in PLANS:
        raise UnknownPlan("campaign: unknown plan %s (plans: %s)" % (plan, ", ".join(PLANS)))
    line = PLANS[plan][0]
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


def used_bytes(control_text):
    """The capacity model's used bytes from the control file's text (None if absent)."""
    m = re.search(r"^# capacity .*used (\d+) bytes", control_text, re.M)
    return int(m.group(1)) if m else None


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

def ctl(faultfs, mnt, *control_lines):
    r = subprocess.run([faultfs, "ctl", mnt, *control_lines], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("faultfs ctl %s %s: exit %d: %s" % (mnt, " ".join(control_lines), r.returncode,
                                                               (r.stderr or r.stdout).strip()))
    return r.stdout


def inject(faultfs, mnt, plan, glob, rundir, window_bytes):
    todo = lines(plan, glob)
    if todo == ["capacity USED+HEADROOM"]:
        ctl(faultfs, mnt, "capacity 1024G")   # turns the model on: it counts the space used now
        used = used_bytes(ctl(faultfs, mnt))
        if used is None:
            raise RuntimeError("cannot read the capacity model's used bytes from %s's control file" % mnt)
        todo = ["capacity %d" % (used + capacity_headroom(window_bytes))]
    with open(rundir + "/fault-applied.txt", "w") as f:
        f.write("\n".join(todo) + "\n")
    if todo:
        ctl(faultfs, mnt, *todo)


def end(faultfs, mnt, plan=""):
    if plan == "selftest-drop":
        # The loss lasts until the crash: a later rewrite of the same pages
        # (a checkpoint) would repair it and the self-test would prove nothing.
        return
    ctl(faultfs, mnt, "clear", "capacity off", "release")


def end_by_control(mnt, plan=""):
    """end() by one write to MNT/.faultfs/control (no process started); what was done."""
    if plan == "selftest-drop":
        return "kept armed until the crash"
    fd = os.open(os.path.join(mnt, ".faultfs", "control"), os.O_WRONLY)
    try:
        os.write(fd, b"clear\ncapacity off\nrelease\n")
    finally:
        os.close(fd)
    return "clear, capacity off, release"


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    try:
        if cmd == "lines" and len(argv) == 4:
            print("\n".join(lines(argv[2], argv[3])))
        elif cmd == "describe" and len(argv) == 3:
            lines(argv[2], "")
            print(describe(argv[2]))
        elif cmd == "inject" and len(argv) == 8:
            inject(argv[2], argv[3], argv[4], argv[5], argv[6], int(argv[7]))
        elif cmd == "end" and len(argv) in (4, 5):
            end(argv[2], argv[3], argv[4] if len(argv) == 5 else "")
        elif cmd == "fired" and len(argv) == 3:
            print(json.dumps(fired_in_file(argv[2])))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except UnknownPlan as e:
        print(e, file=sys.stderr)
        return 2
    except RuntimeError as e:
        print("campaign: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
