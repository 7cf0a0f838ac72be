#!/usr/bin/python3
"""faultfs application campaigns: run a real database on a faultfs mount under
a fault plan, crash it, restart it on the backing files (re-mounted, page
cache dropped) and check every key it acknowledged as committed. One verdict
per run in the categories of Rebello et al., "Can Applications Recover from
fsync Failures?" (USENIX ATC 2020), plus "application unavailable",
"database corruption" (its own integrity check fails) and "not exercised"
(the fault never fired: the mount's events show no injection with an errno,
no write dropped or stalled). Every verdict says how often the fault fired.

Usage: mount-scripts/campaign [options] APP      (as root)
  APP               sqlite, postgres, redis, lmdb, leveldb, or all
  --fs FS           where the application's data lives: fuse (default: a
                    faultfs mount over its directory), or ext4, ext4-journal
                    (ext4 -o data=journal), xfs, btrfs: block mode, that file
                    system on a disk faultfs serves (`faultfs mount --fs`)
  --fault LINE      run this control line as the only fault plan (e.g.
                    'fail writeback EIO count=1'; with --fs a `faultfs ctl`
                    line); default: the standard plans
  --plans LIST      comma list of plans (baseline, wb-eio, wb-enospc,
                    wb-eio-data, fsync-eio, flush-eio, capacity, stall,
                    selftest-drop, selftest-seeded; with --fs: blk-data-eio,
                    blk-journal-eio, blk-flush-eio, blk-full, blk-stall; in
                    either mode: power-loss, power-loss-torn, corrupt-read,
                    corrupt-write); a plan that cannot apply to the file
                    system is reported "not applicable" with the reason
  --unsafe          run the applications' unsafe configuration (SQLite
                    synchronous=OFF, Redis appendfsync no, PostgreSQL
                    fsync=off, LevelDB sync=False, LMDB MDB_NOSYNC): under
                    power-loss it must lose acknowledged keys (a self-test)
  --configs LIST    safe, unsafe or safe,unsafe (default safe; --unsafe is
                    --configs unsafe)
  --seed N          the power-loss plans' seed (default 1): each run's crash
                    point and torn sectors come from it and the run number
  --crash-model M   posix (default) or journal: the mount's -o crashsim model
  --modes LIST      comma list of the application's modes (default: all of them)
  --runs N          repeat every case N times (default 1)
  --quick           small workload and a reduced plan (CI)
  --sizes P,O,A     the workload's sizes: P keys preloaded, O operations in
                    the fault window, A after it (default 100,150,30;
                    --quick 30,40,10)
  --out DIR         where runs and results go (default /tmp/faultfs-campaign)
  --faultfs PATH    use this faultfs binary (default: build REPO/.build-camp)
  --no-monitor      do not wrap the fault phase in `faultfs run` (no monitor report)
  --doc / --no-doc  write / do not write docs/app-results.md (default: only for `all`
                    without --quick, --fault, --plans or --modes)
  --keep            keep each run's data directory (default: delete it once checked)
  --plan-line PLAN=LINE
                    (for testing the campaign) arm LINE where PLAN would arm its own line
  -h, --help

Every run leaves OUT/APP/MODE/PLAN/runN/ with: acks.jsonl (the
acknowledgement log, outside the mount), workload.json (what the application
reported), server*.log, verdict.json, monitor/ (faultfs run's report), and a
line in OUT/results.jsonl; OUT/results.md is the table. Prints one
"VERDICT ..." line per run. Exit status: 0 when every run completed (whatever
the verdicts), 1 when a run could not be carried out (the failing step is
named; the checker's own failure is one) or a self-test failed (its loss
came out "correct", or it never fired), 2 on bad usage.

mount-scripts/campaign installs the packages and builds faultfs (asking
`driver.py --needs ARGS` what is missing), then runs this driver. Internal:
`driver.py --phase ...` is the fault phase, run under `faultfs run`.
"""
import dataclasses, glob, json, os, re, shutil, signal, subprocess, sys, threading, time, traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mounts    # noqa: E402
import plans     # noqa: E402
import report    # noqa: E402
from apps import APPS  # noqa: E402

PY = "/usr/bin/python3"   # Debian's: python3-lmdb, -plyvel, -psycopg2, -redis live there
REPO = os.path.dirname(os.path.dirname(HERE))
ALL_APPS = ["sqlite", "postgres", "redis", "lmdb", "leveldb"]
QUICK_PLANS = ["baseline", "selftest-seeded", "selftest-drop", "wb-eio-data", "fsync-eio"]
STANDARD_PLANS = ["baseline", "wb-eio", "wb-enospc", "wb-eio-data", "fsync-eio", "flush-eio", "capacity",
                  "stall", "selftest-drop"]
BLOCK_QUICK_PLANS = ["baseline", "selftest-seeded", "blk-data-eio", "blk-flush-eio"]
BLOCK_STANDARD_PLANS = ["baseline", "selftest-seeded", "blk-data-eio", "blk-journal-eio", "blk-flush-eio",
                        "blk-full", "blk-stall"]
STALL_RELEASE_AFTER = 3   # seconds a stall lasts
STALL_PLANS = ("stall", "blk-stall")
CONFIGS = ("safe", "unsafe")


class UsageError(Exception):
    pass


@dataclasses.dataclass
class Options:
    apps: list
    plans: list
    modes: list          # empty: every mode of each application
    runs: int = 1
    quick: bool = False
    out: str = "/tmp/faultfs-campaign"
    faultfs: str = ""
    monitor: bool = True
    doc: bool = False
    keep: bool = False
    plan_lines: dict = dataclasses.field(default_factory=dict)   # --plan-line PLAN=LINE
    fs: str = "fuse"     # --fs: fuse, or a block-mode file system (plans.FILE_SYSTEMS)
    configs: list = dataclasses.field(default_factory=lambda: ["safe"])   # safe, unsafe
    seed: int = 1        # --seed: the power-loss plans' crash points and torn sectors
    crash_model: str = "posix"
    workload_sizes: tuple = ()   # --sizes: (preload, ops, after)
    help: bool = False

    @property
    def block(self):
        return plans.is_block(self.fs)

    def sizes(self):
        """The workload's sizes (workload.py options)."""
        preload, ops, after = self.workload_sizes or ((30, 40, 10) if self.quick else (100, 150, 30))
        give_up = ["--give-up", "8"] if self.quick or self.workload_sizes else []
        return ["--preload", str(preload), "--ops", str(ops), "--after", str(after)] + give_up


def parse_args(argv):
    """The command line (pure): Options, or UsageError."""
    apps, fault, plan_list, modes, doc = [], "", "", "", None
    o = Options(apps=[], plans=[], modes=[])
    args = list(argv)

    def value(flag):
        if not args:
            raise UsageError("%s needs a value" % flag)
        return args.pop(0)

    while args:
        a = args.pop(0)
        if a == "--fault":
            fault = value(a)
        elif a == "--plans":
            plan_list = value(a)
        elif a == "--fs":
            o.fs = value(a)
            if o.fs not in plans.FILE_SYSTEMS:
                raise UsageError("--fs wants one of %s" % ", ".join(plans.FILE_SYSTEMS))
        elif a == "--modes":
            modes = value(a)
        elif a == "--runs":
            runs = value(a)
            if not re.fullmatch(r"[1-9][0-9]*", runs):
                raise UsageError("--runs wants a positive number")
            o.runs = int(runs)
        elif a == "--quick":
            o.quick = True
        elif a == "--sizes":
            sizes = value(a)
            if not re.fullmatch(r"[1-9][0-9]*,[1-9][0-9]*,[0-9]+", sizes):
                raise UsageError("--sizes wants PRELOAD,OPS,AFTER (e.g. 20,20,5)")
            o.workload_sizes = tuple(int(x) for x in sizes.split(","))
        elif a == "--out":
            o.out = value(a)
        elif a == "--faultfs":
            o.faultfs = value(a)
        elif a == "--no-monitor":
            o.monitor = False
        elif a in ("--doc", "--no-doc"):
            doc = a == "--doc"
        elif a == "--keep":
            o.keep = True
        elif a == "--unsafe":
            o.configs = ["unsafe"]
        elif a == "--configs":
            o.configs = [c for c in value(a).split(",") if c]
            if not o.configs or any(c not in CONFIGS for c in o.configs):
                raise UsageError("--configs wants safe, unsafe or safe,unsafe")
        elif a == "--seed":
            seed = value(a)
            if not re.fullmatch(r"[0-9]+", seed):
                raise UsageError("--seed wants a number")
            o.seed = int(seed)
        elif a == "--crash-model":
            o.crash_model = value(a)
            if o.crash_model not in ("posix", "journal"):
                raise UsageError("--crash-model wants posix or journal")
        elif a == "--plan-line":
            plan, eq, line = value(a).partition("=")
            if not eq or not plans.known(plan):
                raise UsageError("--plan-line wants PLAN=LINE with a known plan")
            o.plan_lines[plan] = line
        elif a in ("-h", "--help"):
            o.help = True
            return o
        elif a in ALL_APPS:
            apps.append(a)
        elif a == "all":
            apps += ALL_APPS
        else:
            raise UsageError("unknown argument: %s" % a)
    if not apps:
        raise UsageError("name an application (sqlite, postgres, redis, lmdb, leveldb or all)")
    o.apps = apps
    o.modes = [m for m in modes.split(",") if m]
    if fault:
        o.plans = ["custom:" + fault]
    elif plan_list:
        o.plans = [p for p in plan_list.split(",") if p]
    elif o.block:
        o.plans = BLOCK_QUICK_PLANS if o.quick else BLOCK_STANDARD_PLANS
    else:
        o.plans = QUICK_PLANS if o.quick else STANDARD_PLANS
    for p in o.plans:
        try:
            plans.lines(p, "x")
        except plans.UnknownPlan as e:
            raise UsageError(str(e).removeprefix("campaign: "))
    if doc and o.block:
        raise UsageError("--doc writes the FUSE-mode table of docs/app-results.md; block-mode results stay in OUT")
    if doc is None:
        doc = not o.block and (" ".join(ALL_APPS) in " ".join(apps) and not o.quick and not (fault or plan_list or modes))
    o.doc = doc
    return o


def run_dir(out, app, mode, plan, n, config="safe"):
    folder = mode if config == "safe" else mode + "-" + config
    return os.path.join(out, app, folder, re.sub(r"[^A-Za-z0-9_.=-]", "_", plan), "run%d" % n)


def cases(o):
    """The runs, in order: (app, mode, config, plan, n); and the notes about
    modes an application lacks (pure)."""
    out, notes = [], []
    for name in o.apps:
        app = APPS[name]
        for config in o.configs:
            modes = app.modes_for(config == "unsafe")
            for mode in o.modes or modes:
                if mode not in modes:
                    notes.append("%s has no mode %s%s (modes: %s)" % (
                        name, mode, "" if config == "safe" else " when " + config, " ".join(modes)))
                    continue
                for plan in o.plans:
                    if plan == "selftest-seeded" and app.tamper is None:
                        continue
                    out += [(name, mode, config, plan, n) for n in range(1, o.runs + 1)]
    return out, notes


def log(msg):
    print("[campaign %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def missing_packages(names):
    return [p for p in names if subprocess.run(["dpkg", "-s", p], stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL).returncode != 0]


# ---------------------------------------------------------------- the mounts

class StepFailed(Exception):
    pass


def run(cmd, **kw):
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, **kw)


def unmount(faultfs, mnt, strict=True):
    """Clear the mount's rules (a stalled write must not hold the unmount),
    unmount it, and wait for its daemon to exit."""
    try:
        pid = mounts.daemon_pid(mnt)
    except (OSError, ValueError, KeyError):
        pid = None
    try:
        mounts.control(mnt, "clear", "release")
    except mounts.ControlRefused:
        pass
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if run([faultfs, "umount", mnt], **quiet).returncode != 0:
        if strict:
            raise StepFailed("faultfs umount %s failed" % mnt)
        run([faultfs, "umount", "--lazy", mnt], **quiet)
    for _ in range(100):
        if pid is None or not os.path.exists("/proc/%d" % pid):
            return
        time.sleep(0.1)


def is_mounted(path):
    return path in mounts.faultfs_mounts_below(path) or path in mounts.block_targets_below(path)


# ---------------------------------------------------------------- block mode

def block_mount(o, image, data, crashsim=False):
    """The --fs file system on IMAGE (made when new, reused after the crash) at
    DATA; crashsim: the disk keeps what `faultfs crash` needs to undo."""
    crash = ["-o", plans.crashsim_option(o.crash_model)] if crashsim else []
    r = run([o.faultfs, "mount", *plans.block_mount_arguments(o.fs), *crash, "--image", image, data],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise StepFailed("faultfs mount --fs %s %s failed: %s" % (o.fs, data, r.stdout.strip()))


def block_unmount(faultfs, target, strict=True):
    """Rules cleared first (a stalled write would hold the unmount), then
    `faultfs umount`: file system, loop device, faultfs mount, state directory."""
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run([faultfs, "ctl", target, *plans.BLOCK_END_LINES], **quiet)
    for _ in range(2):   # a second umount finishes a half-torn-down target
        r = run([faultfs, "umount", target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode == 0:
            return
        time.sleep(1)
    if strict:
        raise StepFailed("faultfs umount %s failed: %s" % (target, r.stdout.strip()))


def block_events_file(faultfs, target):
    """The events file of the faultfs mount that serves TARGET's disk (from `faultfs ctl TARGET`)."""
    r = run([faultfs, "ctl", target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    m = re.search(r"served by the faultfs mount (\S+)$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise StepFailed("faultfs ctl %s does not name the disk's faultfs mount: %s" % (target, r.stdout.strip()))
    return mounts.control_path(m.group(1), "events")


def faultfs_cgroups():
    found = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        depth = root[len("/sys/fs/cgroup"):].count("/")
        found += [os.path.join(root, d) for d in dirs if "faultfs" in d]
        if depth >= 2:
            dirs[:] = []
    return set(found)


# ---------------------------------------------------------------- one run

class Campaign:
    def __init__(self, o):
        self.o = o
        self.child = None      # the running `faultfs run`, killed on the way out

    def run_case(self, name, mode, config, plan, n):
        """One run: prepare, fault phase, re-mount, restart, check. Raises StepFailed."""
        o = self.o
        rundir = run_dir(o.out, name, mode, plan, n, config)
        data = os.path.join(rundir, "data")
        image = os.path.join(rundir, "disk.img")     # block mode: the disk, kept across the crash
        unsafe = config == "unsafe"
        app = APPS[name](rundir, unsafe=unsafe)
        step = [""]

        def at(what):
            step[0] = what
            with open(os.path.join(rundir, "step"), "w") as f:
                f.write(what + "\n")

        def write(file, text):
            with open(os.path.join(rundir, file), "w") as f:
                f.write(text + "\n")

        shutil.rmtree(rundir, ignore_errors=True)
        os.makedirs(data)
        ok = False
        try:
            if o.block:
                # The application's files are made on the file system under test.
                at("mount %s on %s (faultfs mount --fs)" % (o.fs, data))
                block_mount(o, image, data, crashsim=plans.is_crash(plan))
            at("prepare " + name)
            try:
                app.prepare(data, mode, o.out)
            except (OSError, subprocess.CalledProcessError) as e:
                write("prepare.log", traceback.format_exc())
                raise StepFailed("preparing %s failed: %s" % (name, e))
            if o.block and plans.is_crash(plan):
                # The empty database is on the disk before the power can go
                # (in FUSE mode it is made before the crash-simulating mount).
                os.sync()
            write("config", "%s%s" % (config, (": " + app.unsafe_setting) if unsafe else ""))
            if plans.is_crash(plan):
                write("crash-model", o.crash_model)
            write("plan", plan)
            write("plan-description", plans.describe(plan))
            # The mount's events: the checker counts from them how often the plan fired.
            events = os.path.join(rundir, "monitor" if o.monitor else "", "injections.jsonl")
            acks = os.path.join(rundir, "acks.jsonl")
            # Block mode: the workload watches the disk's faultfs mount's events;
            # they are copied to EVENTS before the unmount takes that mount away.
            live_events = block_events_file(o.faultfs, data) if o.block else events
            at("fault phase (start %s, workload, fault, crash)" % name)
            self.fault_phase(name, mode, config, plan, n, rundir, data, live_events)
            if o.block:
                at("save the disk's events, unmount %s" % o.fs)
                save_block_events(plan, live_events, events, acks)
                block_unmount(o.faultfs, data)
            if not os.path.exists(acks) or os.path.getsize(acks) == 0:
                raise StepFailed("the workload logged nothing (see %s/phase.log)" % rundir)
            if is_mounted(data):
                raise StepFailed("the fault phase left %s mounted" % data)
            at("drop caches")
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            at("re-mount without faults")
            restart_events = os.path.join(rundir, "restart-events.jsonl")
            if o.block:
                block_mount(o, image, data)     # the same disk: the file system recovers its journal
            elif run([o.faultfs, "mount", "-o", "allow_other,events=" + restart_events, data, data]).returncode != 0:
                raise StepFailed("faultfs mount %s failed" % data)
            if plans.armed_at_restart(plan, o.block):
                at("arm %s for the restart" % plan)
                lines = plans.lines(plan, app.data_glob)
                mounts.control(data, *lines)
                write("fault-applied.txt", "at the restart: " + " / ".join(lines))
            if plan == "selftest-seeded":
                at("tamper (seeded loss)")
                write("tamper.txt", app.tamper(data, acks))
            at("restart " + name)
            if not app.start(data, mode, os.path.join(rundir, "server-restart.log")):
                write("restart-failed", "%s did not restart" % name)
            at("check acknowledged keys")
            # (An application that crashes reading its data is a verdict; the
            # checker's own failure is a campaign error: see workload.py check.)
            with open(os.path.join(rundir, "check.log"), "w") as f:
                r = run([PY, os.path.join(HERE, "workload.py"), "check", "--app", name, "--mode", mode,
                         "--data", data, "--acks", acks, "--out", os.path.join(rundir, "verdict.json"),
                         "--plan", plan, "--events", events, "--tamper-log", os.path.join(rundir, "tamper.txt"),
                         *(["--unsafe"] if unsafe else []), *(["--block"] if o.block else []),
                         *(["--restart-events", restart_events] if not o.block else [])],
                        stdout=f, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                raise StepFailed("the checker failed (exit %d, see %s/check.log)" % (r.returncode, rundir))
            at("stop %s and unmount" % name)
            app.kill()
            if app.server:
                write("server-log-summary.txt", app.log_summary(os.path.join(rundir, "server.log")))
                write("server-restart-summary.txt", app.log_summary(os.path.join(rundir, "server-restart.log")))
            if o.block:
                block_unmount(o.faultfs, data)
            else:
                unmount(o.faultfs, data)
            at("done")
            ok = True
        except StepFailed as e:
            log("%s/%s/%s/run%d: %s" % (name, mode, plan, n, e))
            write("error", "failed at step '%s': %s" % (step[0], e))
            raise
        except Exception as e:
            write("error", "failed at step '%s': %s" % (step[0], e))
            log("%s/%s/%s/run%d: %s" % (name, mode, plan, n, traceback.format_exc()))
            raise StepFailed(str(e)) from e
        finally:
            self.stop_child()
            app.kill()
            if o.block and is_mounted(data):
                block_unmount(o.faultfs, data, strict=False)
            elif is_mounted(data):
                unmount(o.faultfs, data, strict=False)
            if ok and not o.keep:
                shutil.rmtree(data, ignore_errors=True)
                if os.path.exists(image):
                    os.unlink(image)

    def fault_phase(self, name, mode, config, plan, n, rundir, data, events):
        """The application started, the workload with its fault window, the
        crash: under `faultfs run` (which mounts DATA and records the monitor's
        report) or on a plain `faultfs mount`. A power-loss plan's mount
        simulates crashes (-o crashsim) and the phase runs `faultfs crash`."""
        o = self.o
        extra = o.sizes() + [a for p, line in o.plan_lines.items() for a in ("--plan-line", p + "=" + line)]
        if config == "unsafe":
            extra.append("--unsafe")
        crash = {}
        if plans.is_crash(plan):
            seed = plans.crash_seed(o.seed, n)
            sizes = dict(zip(o.sizes()[::2], o.sizes()[1::2]))
            crash = {"faultfs": o.faultfs, "seed": seed,
                     "point": plans.crash_point(seed, int(sizes["--preload"]), int(sizes["--ops"]))}
            extra += ["--crash-flag", os.path.join(rundir, "crash-requested")]
        options = "allow_other" + ("," + plans.crashsim_option(o.crash_model) if crash else "")
        phase = [PY, os.path.abspath(__file__), "--phase", name, mode, plan, rundir, events, json.dumps(extra),
                 json.dumps(crash)]
        with open(os.path.join(rundir, "phase.log"), "w") as logf:
            if o.block:
                # DATA is mounted already; the plan is armed through `faultfs ctl`.
                status = run(phase, stdout=logf, stderr=subprocess.STDOUT,
                             env=dict(os.environ, FAULTFS_DIR=data, CAMPAIGN_BLOCK_FAULTFS=o.faultfs)).returncode
            elif o.monitor:
                self.child = subprocess.Popen([o.faultfs, "run", "--dir", data, "-o", options, "--out",
                                               os.path.join(rundir, "monitor"), "--quiet", "--", *phase],
                                              stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
                status = self.child.wait()
                self.child = None
            else:
                if run([o.faultfs, "mount", "-o", options + ",events=" + events, data, data]).returncode != 0:
                    raise StepFailed("faultfs mount %s failed" % data)
                status = run(phase, stdout=logf, stderr=subprocess.STDOUT,
                             env=dict(os.environ, FAULTFS_DIR=data)).returncode
                unmount(o.faultfs, data)
        if status != 0:
            said = read(os.path.join(rundir, "phase-step"))
            tail = " ".join(read(os.path.join(rundir, "phase.log")).splitlines()[-3:])
            raise StepFailed("the fault phase exited %d: %s; %s" % (status, said, tail))

    def stop_child(self):
        if self.child is not None:
            self.child.terminate()
            self.child.wait()
            self.child = None

    def cleanup(self):
        """Whatever happened: servers killed, our mounts gone, the cgroups
        `faultfs run` made removed. Returns what could not be removed."""
        self.stop_child()
        for pidfile in glob.glob(os.path.join(glob.escape(self.o.out), "*", "*", "*", "*", "server.pid")):
            name = os.path.relpath(pidfile, self.o.out).split(os.sep)[0]
            if name in APPS:
                APPS[name](os.path.dirname(pidfile)).kill()
        for m in mounts.block_targets_below(self.o.out):
            block_unmount(self.o.faultfs, m, strict=False)
        for m in mounts.faultfs_mounts_below(self.o.out):
            unmount(self.o.faultfs, m, strict=False)
        for c in sorted(faultfs_cgroups() - self.cgroups_before, key=len, reverse=True):
            try:
                os.rmdir(c)
            except OSError:
                pass
        return (mounts.block_targets_below(self.o.out) + mounts.faultfs_mounts_below(self.o.out)
                + sorted(faultfs_block_states(self.o.out)) + sorted(faultfs_cgroups() - self.cgroups_before))

    def main(self, command_line):
        o = self.o
        o.faultfs = os.path.realpath(o.faultfs)
        if not os.access(o.faultfs, os.X_OK):
            log("--faultfs %s is not an executable file" % o.faultfs)
            return 1
        if o.block and o.monitor:
            log("--fs %s: no monitor report (`faultfs run` mounts FUSE; the disk's events are kept)" % o.fs)
            o.monitor = False
        if o.monitor and run([o.faultfs, "run", "--help"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL).returncode != 0:
            log("this faultfs has no 'run' subcommand: no monitor report")
            o.monitor = False
        os.makedirs(o.out, exist_ok=True)
        os.chmod(o.out, 0o755)
        o.out = os.path.realpath(o.out)
        # The servers run as their own users: they must reach the data directory.
        d = o.out
        while d != "/":
            os.chmod(d, os.stat(d).st_mode | 0o001)
            d = os.path.dirname(d)
        open(os.path.join(o.out, "results.jsonl"), "w").close()
        with open(os.path.join(o.out, "meta.txt"), "w") as f:
            f.write("kernel %s\ncommand: mount-scripts/campaign %s\ndate: %s\n" % (
                os.uname().release, command_line, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
        todo, notes = cases(o)
        for note in notes:
            log(note)
        failures = 0
        for name, mode, config, plan, n in todo:
            case = "%s/%s%s/%s/run%d" % (name, mode, "" if config == "safe" else "-" + config, plan, n)
            rundir = run_dir(o.out, name, mode, plan, n, config)
            why_not = plans.not_applicable(plan, o.fs)
            if why_not:
                log("%s: not applicable on %s: %s" % (case, o.fs, why_not))
                report.not_applicable(o.out, rundir, name, mode, plan, n, o.fs, why_not, config)
                continue
            log("%s: %s" % (case, plans.describe(plan)))
            try:
                self.run_case(name, mode, config, plan, n)
            except StepFailed:
                failures += 1
                log("%s: FAILED at step '%s' (see %s)" % (case, read(os.path.join(rundir, "step")) or "?", rundir))
            # (3: a self-test whose loss went unnoticed, or that never fired)
            if report.record(o.out, rundir, name, mode, plan, n, o.fs, config) != 0:
                failures += 1
                log("%s: SELF-TEST FAILED (see the VERDICT line)" % case)
        report.table(o.out, os.path.join(REPO, "docs", "app-results.md") if o.doc else None)
        log("results: %s/results.md%s" % (o.out, ", docs/app-results.md" if o.doc else ""))
        if failures:
            log("%d run(s) could not be carried out" % failures)
            return 1
        return 0


def save_block_events(plan, live, saved, acks):
    """The disk's faultfs events, copied before the unmount; for blk-full the
    operations the full file system refused (faultfs injected nothing)."""
    with open(saved, "w") as out:
        try:
            with open(live) as f:
                shutil.copyfileobj(f, out)
        except OSError:
            pass
        if plan == "blk-full" and os.path.exists(acks):
            with open(acks) as f:
                out.write("".join(line + "\n" for line in plans.full_events(f)))


def faultfs_block_states(below):
    """Block-mode state directories (/var/lib/faultfs/block/*) whose target
    (the facts file's target= line) is at or below BELOW: this campaign's."""
    root = "/var/lib/faultfs/block"
    found = []
    for d in (os.listdir(root) if os.path.isdir(root) else []):
        facts = read(os.path.join(root, d, "facts"))
        target = next((l[len("target="):] for l in facts.splitlines() if l.startswith("target=")), "")
        if target == below or target.startswith(below.rstrip("/") + "/"):
            found.append(os.path.join(root, d))
    return found


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------- the fault phase (under faultfs run)

def fault_phase(name, mode, plan, rundir, events, extra, crash):
    """Runs with the mount at $FAULTFS_DIR: start the application, run the
    workload (its own process: its crash is os._exit), kill the server.
    CRASH (power-loss plans): {"faultfs", "seed", "point"}: `faultfs crash
    --kill` once the workload logged POINT operations."""
    data = os.environ["FAULTFS_DIR"]
    os.chdir(rundir)     # nothing of this process on the mount: `faultfs crash --kill` must spare it
    app = APPS[name](rundir, unsafe="--unsafe" in extra)

    def at(what):
        with open(os.path.join(rundir, "phase-step"), "w") as f:
            f.write("step %s\n" % what)

    try:
        at("start-app")
        if not app.start(data, mode, os.path.join(rundir, "server.log")):
            print("campaign: %s did not start on the faultfs mount (see %s/server.log)" % (name, rundir),
                  file=sys.stderr)
            return 3
        at("workload")
        if plan in STALL_PLANS or (plan.startswith("custom:") and "stall" in plan):
            threading.Thread(target=release_stall, args=(data, rundir), daemon=True).start()
        workload = [PY, os.path.join(HERE, "workload.py"), "run", "--app", name, "--mode", mode, "--data", data,
                    "--acks", os.path.join(rundir, "acks.jsonl"), "--report", os.path.join(rundir, "workload.json"),
                    "--events", events, "--plan", plan, *extra]
        if crash:
            status, why = crash_during(workload, plan, data, rundir, crash, app)
            if status != 0:
                print("campaign: %s" % why, file=sys.stderr)
                return 4
            return 0
        r = run(workload)
        if r.returncode != 0:
            with open(os.path.join(rundir, "phase-notes"), "a") as f:
                f.write("workload exit %d\n" % r.returncode)
        if app.server:
            with open(os.path.join(rundir, "alive.txt"), "w") as f:
                f.write("running\n" if app.alive() else "not running\n")
        at("crash")
    finally:
        app.kill()
    return 0


def logged_operations(path, state):
    """How many operations the acknowledgement log holds (their outcomes, not
    the pending records), read on from STATE {"offset", "count"} (pure but for the read)."""
    try:
        with open(path, "rb") as f:
            f.seek(state.get("offset", 0))
            chunk = f.read()
    except OSError:
        return state.get("count", 0)
    complete = chunk[:chunk.rfind(b"\n") + 1]
    state["offset"] = state.get("offset", 0) + len(complete)
    state["count"] = state.get("count", 0) + sum(1 for line in complete.splitlines()
                                                 if line.strip() and b'"pending": true' not in line)
    return state["count"]


def crash_during(workload, plan, data, rundir, crash, app):
    """The workload runs; once it logged crash["point"] operations (or ended
    first), `faultfs crash DATA --kill` pulls the plug while it goes on
    committing. RUNDIR/crash-requested tells the workload that a failure from
    now on is in doubt; crash.json is the crash's report, fault-applied.txt
    says where it struck. Returns (status, why)."""
    acks = os.path.join(rundir, "acks.jsonl")
    child = subprocess.Popen(workload, stdin=subprocess.DEVNULL)
    reaper = threading.Thread(target=child.wait, daemon=True)   # reaped as soon as the crash kills it
    reaper.start()
    state = {}
    while reaper.is_alive() and logged_operations(acks, state) < crash["point"]:
        time.sleep(0.01)
    at_op = logged_operations(acks, state)
    open(os.path.join(rundir, "crash-requested"), "w").close()
    server = app.server_pid()
    if server is not None:
        # (a server started by this process: reaped when --kill ends it)
        threading.Thread(target=reap, args=(server,), daemon=True).start()
    args = plans.crash_arguments(plan, data, crash["seed"])
    t0 = time.time()
    try:
        r = run([crash["faultfs"], *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=180)
        status, out, err = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired:
        status, out, err = 124, "", "faultfs crash did not return in 180 s"
    took = time.time() - t0
    if child.poll() is None:      # a server's client: its server is gone
        child.kill()
    reaper.join(10)
    with open(os.path.join(rundir, "crash.json"), "w") as f:
        f.write(out)
    with open(os.path.join(rundir, "fault-applied.txt"), "w") as f:
        f.write("faultfs %s   (after operation %d of the log, planned at %d%s; took %.1f s)\n" % (
            " ".join(args), at_op, crash["point"], ", the workload had ended" if at_op < crash["point"] else "", took))
    if status != 0:
        return status, "faultfs %s failed (exit %d): %s" % (" ".join(args), status, (err or out).strip()[-500:])
    return 0, ""


def reap(pid):
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def release_stall(data, rundir):
    """A stall lasts STALL_RELEASE_AFTER seconds from the moment the workload
    armed it (it creates RUNDIR/fault-started). This process holds none of the
    database's descriptors, so nothing here waits on the stalled writeback."""
    started = os.path.join(rundir, "fault-started")
    for _ in range(6000):
        if os.path.exists(started):
            break
        time.sleep(0.1)
    time.sleep(STALL_RELEASE_AFTER)
    with open(os.path.join(rundir, "workload.json.hooks.log"), "a") as f:
        try:
            f.write("[%.3f] release: %s\n" % (time.time(), plans.end(
                data, faultfs=os.environ.get("CAMPAIGN_BLOCK_FAULTFS") or None)))
        except (OSError, RuntimeError) as e:
            f.write("[%.3f] release failed: %s\n" % (time.time(), e))


# ---------------------------------------------------------------- entry

def main(argv):
    if argv[:1] == ["--phase"]:
        name, mode, plan, rundir, events, extra, crash = argv[1:8]
        return fault_phase(name, mode, plan, rundir, events, json.loads(extra), json.loads(crash))
    needs = argv[:1] == ["--needs"]
    if needs:
        argv = argv[1:]
    try:
        o = parse_args(argv)
    except UsageError as e:
        print("campaign: %s" % e, file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 2
    if o.help:
        if not needs:
            print(usage())
        return 0
    if os.geteuid() != 0:
        print("campaign: run as root (mounts, /proc/sys/vm/drop_caches, servers as their users)", file=sys.stderr)
        return 1
    if needs:
        # For mount-scripts/campaign: what to install and whether to build.
        missing = missing_packages(sorted({p for a in o.apps for p in APPS[a].packages}))
        if missing:
            print("install " + " ".join(missing))
        if not o.faultfs:
            print("build")
        return 0
    if not o.faultfs:
        print("campaign: --faultfs is missing (mount-scripts/campaign builds it)", file=sys.stderr)
        return 2
    campaign = Campaign(o)
    campaign.cgroups_before = faultfs_cgroups()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    status = 1
    try:
        status = campaign.main(os.environ.get("CAMPAIGN_COMMAND", " ".join(argv)))
    except KeyboardInterrupt:
        status = 130
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    finally:
        left = campaign.cleanup()
        if left:
            log("LEFT BEHIND (could not remove): %s" % " ".join(left))
        if status != 0:
            log("FAILED (exit %d); mounts, servers and cgroups cleaned up" % status)
    return status


def usage():
    return __doc__[__doc__.index("Usage:"):__doc__.index("  -h, --help") + len("  -h, --help")]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
