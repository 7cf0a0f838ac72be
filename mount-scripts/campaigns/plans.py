#!/usr/bin/python3
"""The campaign's fault plans: their control lines, what they mean, how they
are applied and ended (writes to the mount's control file), and whether (how
often) they fired.

A plan "fires" when the mount's events show it acting: an injection with an
errno (the capacity model's ENOSPC included), or a write dropped, stalled,
shortened or delayed. A run whose plan never fired tested nothing.
"""
import json, os, subprocess

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
# Block mode (--fs): the application's data directory is a real file system
# whose disk faultfs serves (`faultfs mount --fs`); the plans are the disk's
# faults, armed with `faultfs ctl TARGET LINE` (which turns file=, region=
# and sectors= into the image's byte ranges). name: (ctl line, description)
BLOCK_PLANS = {
    "blk-data-eio": ("fail write EIO count=1 file=GLOB",
                     "the next disk write to the blocks of the main data files fails with EIO, once"),
    "blk-journal-eio": ("fail write EIO count=1 region=journal",
                        "the next disk write to the journal (ext4's journal, XFS's log) fails with EIO, once"),
    "blk-flush-eio": ("fail flush EIO count=1", "the disk's next cache flush fails with EIO, once"),
    "blk-full": ("", "the file system is full: a filler file (fallocate, then 4 KiB writes until ENOSPC) "
                     "leaves HEADROOM free, a tenth of what the fault window writes (4-16 KiB); "
                     "fired = the application's operations that failed with ENOSPC"),
    "blk-stall": ("stall write", "every disk write stalls for 3 s, then is released"),
}
# Power loss and silent corruption (issue 12): they run in either mode. In FUSE
# mode the mount is the disk; in block mode (--fs) `faultfs crash TARGET`
# crashes the disk under the file system, and the corrupt rules are `faultfs
# ctl` lines on the data files' blocks. name: (control line, description)
CRASH_PLANS = {
    "power-loss": ("crash", "power loss at a seeded random point of the fault window: `faultfs crash --kill` "
                            "(the application SIGKILLed, every change not yet durable undone), then a restart"),
    "power-loss-torn": ("crash torn", "power loss as power-loss, with torn writes: each not yet durable 4 KiB "
                                      "sector survives or not (seeded, `faultfs crash --torn --seed N`)"),
}
CORRUPT_PLANS = {
    "corrupt-read": ("corrupt read bytes=1 pattern=flip count=1 path=GLOB",
                     "silent corruption: when the application restarts (FUSE mode; block mode: in the window, "
                     "with the clean page cache dropped), its first read of the main data files returns one "
                     "flipped byte"),
    "corrupt-write": ("corrupt write bytes=1 pattern=flip count=1 path=GLOB",
                      "silent corruption: the next write of the main data files stores one flipped byte"),
}
# Block mode's corrupt lines (`faultfs ctl`: file= is the data files' blocks).
BLOCK_CORRUPT_LINES = {
    "corrupt-read": "corrupt read bytes=1 pattern=flip count=1 file=GLOB",
    "corrupt-write": "corrupt write bytes=1 pattern=flip count=1 file=GLOB",
}
# Plans that need no fault layer at all, or that have a line for each mode: they run in either mode.
EITHER_MODE = ("baseline", "selftest-seeded", *CRASH_PLANS, *CORRUPT_PLANS)
FILE_SYSTEMS = ("fuse", "ext4", "ext4-journal", "xfs", "btrfs")
# Why a block plan cannot apply to a file system (never run as a no-op).
BLOCK_NOT_APPLICABLE = {
    ("blk-data-eio", "btrfs"): "Btrfs addresses its blocks logically: faultfs ctl cannot map file= to the disk",
    ("blk-journal-eio", "btrfs"): "Btrfs has no journal (it commits by copy-on-write): region=journal is refused",
    ("corrupt-read", "btrfs"): "Btrfs addresses its blocks logically: faultfs ctl cannot map file= to the disk",
    ("corrupt-write", "btrfs"): "Btrfs addresses its blocks logically: faultfs ctl cannot map file= to the disk",
}

# Plans whose loss must be caught: a verdict of "correct" is a failed self-test.
SELF_TESTS = ("selftest-drop", "selftest-seeded")
# Event actions that show a plan acting (besides "fail" with an errno).
ACTING = ("drop", "stall", "short", "delay", "crash", "corrupt")


class UnknownPlan(ValueError):
    pass


ALL_PLANS = {**PLANS, **BLOCK_PLANS, **CRASH_PLANS, **CORRUPT_PLANS}


def known(plan):
    return plan in ALL_PLANS


def is_crash(plan):
    """A power-loss plan: the fault is `faultfs crash` at the crash point, not a control line."""
    return plan in CRASH_PLANS


def is_corrupt(plan):
    return plan in CORRUPT_PLANS


def armed_at_restart(plan, block):
    """corrupt-read in FUSE mode is armed on the re-mount, before the
    application restarts: a running database reads its files from its own
    cache and the page cache, so only its restart reads them for sure."""
    return plan == "corrupt-read" and not block


def lines(plan, glob, redefined=None, block=False):
    """The control lines of `plan` (custom:LINE is LINE itself); redefined:
    {plan: line} replaces a plan's own line (to test the campaign itself).
    A block plan's lines are `faultfs ctl` lines (blk-full has none: it is a filler file).
    The crash plans have none: the driver runs `faultfs crash` (crash_arguments)."""
    if plan.startswith("custom:"):
        return [plan[len("custom:"):]]
    if not known(plan):
        raise UnknownPlan("campaign: unknown plan %s (plans: %s)" % (plan, ", ".join(ALL_PLANS)))
    if is_crash(plan):
        return []
    own = BLOCK_CORRUPT_LINES[plan] if block and is_corrupt(plan) else ALL_PLANS[plan][0]
    line = (redefined or {}).get(plan, own)
    return [line.replace("GLOB", glob)] if line else []


def describe(plan):
    if plan.startswith("custom:"):
        return plan[len("custom:"):]
    return ALL_PLANS[plan][1]


# ---------------------------------------------------------------- power loss

def crash_seed(seed, run):
    """The run's seed (pure): the campaign's --seed and the run number, so that
    every run of a case crashes elsewhere and the same command repeats them all."""
    import hashlib
    return int.from_bytes(hashlib.sha256(("%d/%d" % (seed, run)).encode()).digest()[:4], "big")


def crash_point(seed, preload, ops):
    """After how many logged operations the crash is requested (pure): a point
    of the fault window drawn from the run's seed, in preload+1 .. preload+ops.
    The workload goes on committing while `faultfs crash --kill` runs, so the
    power goes out in the middle of a commit, not between two."""
    import random
    return preload + 1 + random.Random(seed).randrange(max(1, ops))


def crash_arguments(plan, target, seed):
    """`faultfs crash` arguments for a crash plan (pure)."""
    args = ["crash", target, "--kill", "--json"]
    if plan == "power-loss-torn":
        args += ["--torn", "--seed", str(seed)]
    return args


def crashsim_option(model):
    """The mount option of the crash model: posix (the default) or journal."""
    if model not in ("posix", "journal"):
        raise ValueError("crash model: posix or journal, not %s" % model)
    return "crashsim" if model == "posix" else "crashsim=journal"


# Categories that mean acknowledged data came back wrong or not at all.
LOST = ("key not found", "old value", "key corruption", "value corruption", "database corruption")


def power_loss_outcome(verdict, unsafe, block=False):
    """What a power-loss run shows (pure): ("lost", why) when acknowledged keys
    came back wrong or not at all (or the application will not start),
    ("survived", why) otherwise; and whether that passes the self-test rule: an
    unsafe configuration must lose (else the simulation did not bite: failed),
    a safe one losing is a finding, not a campaign failure. In block mode the
    file system makes data durable on its own (ext4 commits every 5 s), so an
    unsafe configuration that survived is a note there, not a failure."""
    cats = verdict.get("categories", [verdict.get("verdict")])
    counts = verdict.get("counts", {})
    lost = sum(counts.get(c, 0) for c in LOST)
    if "application unavailable" in cats:
        what = ("lost", "the application did not come back")
    elif any(c in LOST for c in cats):
        what = ("lost", "%d of %d acknowledged keys lost or wrong" % (lost, verdict.get("acked_keys", 0)))
    else:
        what = ("survived", "every acknowledged key came back")
    if unsafe and what[0] == "survived" and block:
        return what + ("note: the file system committed the unsynced data itself before the crash",)
    if unsafe:
        return what + ("self-test passed" if what[0] == "lost" else "SELF-TEST FAILED: the unsafe configuration lost nothing",)
    return what + ("finding: a safe configuration lost data" if what[0] == "lost" else "ok",)


# What an application says when it notices corruption (lower case).
CORRUPTION_WORDS = ("corrupt", "checksum", "malformed", "bad file format", "invalid page", "page_notfound",
                    "not a database", "bad magic", "crc")


def mentions_corruption(text):
    t = text.lower()
    return any(w in t for w in CORRUPTION_WORDS)


def corruption_outcome(verdict, said):
    """A corrupt plan's outcome (pure): "detected" when the application
    reported corruption (an error of the workload, of the restart, a failed
    lookup or its integrity check: SAID, the texts); "unavailable" when it
    would not start or open its data without saying why in those words;
    "silent loss" when acknowledged keys came back wrong or not at all
    without any such report; "survived" when every key came back right."""
    if any(mentions_corruption(t) for t in said):
        return "detected"
    cats = verdict.get("categories", [])
    if "application unavailable" in cats:
        return "unavailable"
    if any(c in LOST for c in cats):
        return "silent loss"
    return "survived"


def is_block(fs):
    return fs != "fuse"


def not_applicable(plan, fs):
    """Why `plan` cannot apply to file system `fs` (None: it applies). Pure."""
    if plan.startswith("custom:") or plan in ("baseline", "selftest-seeded"):
        return None
    if plan in EITHER_MODE:
        return BLOCK_NOT_APPLICABLE.get((plan, fs)) if is_block(fs) else None
    if not is_block(fs):
        if plan in BLOCK_PLANS:
            return "a block plan: it needs a disk (--fs ext4, ext4-journal, xfs or btrfs)"
        return None
    if plan in PLANS:
        return "a FUSE-mode plan (it acts on the faultfs mount's requests); block plans: " + ", ".join(BLOCK_PLANS)
    return BLOCK_NOT_APPLICABLE.get((plan, fs))


def block_mount_arguments(fs):
    """`faultfs mount` arguments that make file system `fs` (a --fs name) on a faultfs disk. Pure."""
    if fs == "ext4-journal":
        return ["--fs", "ext4", "-o", "data=journal"]
    if fs in ("ext4", "xfs", "btrfs"):
        return ["--fs", fs]
    raise ValueError("not a block file system: %s" % fs)


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


def is_enospc(error):
    """An application's error text that says the file system is full."""
    e = error.lower()
    return "enospc" in e or "no space" in e or "disk is full" in e or "disk full" in e


def full_events(ack_lines):
    """blk-full's firings: one event line per acknowledged-failed operation whose
    error says the disk is full (the file system, not faultfs, refused it). Pure."""
    out = []
    for line in ack_lines:
        try:
            a = json.loads(line)
        except ValueError:
            continue
        if not a.get("ok", True) and a.get("phase") == "fault" and is_enospc(a.get("error", "")):
            out.append(json.dumps({"action": "fail", "errno": 28, "errno_name": "ENOSPC",
                                   "by": "the full file system (filler file)", "key": a.get("key")}))
    return out


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

def apply(mnt, plan, glob, rundir, window_bytes, redefined=None, faultfs=None):
    """Arms the plan on the mount; RUNDIR/fault-applied.txt and the result say what was applied.
    faultfs (the binary): MNT is a block-mode target, armed through `faultfs ctl`."""
    todo = lines(plan, glob, redefined, block=bool(faultfs))
    if is_crash(plan):
        return ["(the crash is the driver's: see crash.json)"]
    if armed_at_restart(plan, bool(faultfs)):
        return ["(armed when the application restarts)"]
    if faultfs:
        if plan == "blk-full":
            todo = [fill(mnt, capacity_headroom(window_bytes))]
        elif todo:
            ctl(faultfs, mnt, *todo)
        if plan == "corrupt-read":
            todo.append(drop_caches())
        with open(os.path.join(rundir, "fault-applied.txt"), "w") as f:
            f.write("\n".join(todo) + "\n")
        return todo
    if todo == ["capacity USED+HEADROOM"]:
        mounts.control(mnt, "capacity 1024G")   # turns the model on: it counts the space used now
        used = mounts.capacity_used(mnt)
        if used is None:
            raise RuntimeError("cannot read the capacity model's used bytes of %s" % mnt)
        todo = ["capacity %d" % (used + capacity_headroom(window_bytes))]
    if todo:
        mounts.control(mnt, *todo)
    if plan == "corrupt-read":
        todo.append(drop_caches())
    with open(os.path.join(rundir, "fault-applied.txt"), "w") as f:
        f.write("\n".join(todo) + "\n")
    return todo


def drop_caches():
    """corrupt-read: clean cached pages are dropped, so the application's next
    reads reach the disk (and the rule); dirty ones stay."""
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1\n")
    return "echo 1 > /proc/sys/vm/drop_caches"


END_LINES = ("clear", "capacity off", "release")
BLOCK_END_LINES = ("clear", "release")
FILLER = "campaign-filler"     # blk-full's file, at the top of the target


def ctl(faultfs, target, *lines):
    """`faultfs ctl TARGET LINE...`: block keys resolved to the image's ranges."""
    r = subprocess.run([faultfs, "ctl", target, *lines], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise mounts.ControlRefused("faultfs ctl %s %r: %s" % (target, " / ".join(lines), r.stdout.strip()))


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize     # root's view: reserved blocks count as free


def fill(target, headroom):
    """Fills the file system at TARGET with a filler file until about HEADROOM
    bytes are left: fallocate most of it, then 4 KiB writes until ENOSPC or the
    headroom is reached. Returns what it did, for fault-applied.txt."""
    path = os.path.join(target, FILLER)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = max(0, free_bytes(target) - headroom - (1 << 20))
        while size > 0:
            try:
                os.posix_fallocate(fd, 0, size)
                break
            except OSError as e:
                if e.errno != 28:
                    raise
                size = size * 9 // 10
        block = b"\0" * 4096
        os.lseek(fd, 0, os.SEEK_END)
        while free_bytes(target) > headroom:
            try:
                os.write(fd, block)
            except OSError as e:
                if e.errno != 28:
                    raise
                break
        os.fsync(fd)
        written = os.fstat(fd).st_size
    finally:
        os.close(fd)
    return "filler %s: %d bytes; %d bytes left free (aimed at %d)" % (path, written, free_bytes(target), headroom)


def end(mnt, plan="", faultfs=None):
    """Ends the fault window; what was done."""
    if faultfs:
        done = []
        if plan == "blk-full" and os.path.exists(os.path.join(mnt, FILLER)):
            os.unlink(os.path.join(mnt, FILLER))
            done.append("filler removed")
        ctl(faultfs, mnt, *BLOCK_END_LINES)
        return ", ".join(done + list(BLOCK_END_LINES))
    if plan == "selftest-drop":
        # The loss lasts until the crash: a later rewrite of the same pages
        # (a checkpoint) would repair it and the self-test would prove nothing.
        return "kept armed until the crash"
    mounts.control(mnt, *END_LINES)
    return ", ".join(END_LINES)
