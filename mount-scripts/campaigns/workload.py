#!/usr/bin/python3
"""faultfs campaign workload and checker (the application's client: apps/APP.py).

  workload.py run   --app APP --mode MODE --data DIR --acks FILE --report FILE [...]
  workload.py check --app APP --mode MODE --data DIR --acks FILE --out FILE --plan PLAN --events FILE
  workload.py read  ...   (check's child: reads the restarted application's data)

`run` puts keys into the application, one commit per operation, and appends
one JSON line per operation to --acks (a file OUTSIDE the mount, fsync'd
after every line): the key, the value, whether the application said the
commit succeeded, and its error text when it did not. In the middle it applies
the fault plan (--plan) by writing the mount's control file, later ends it, and
at the end it simulates a crash: an embedded database (sqlite, lmdb, leveldb) is
left without closing it (os._exit); a server is killed by the campaign driver.

`run` also keeps the fault window open, committing slowly, until the mount's
events (--events) show the plan acting, so that a plan bites whenever it can.

`check` reads every key back from the restarted application (in a child
process: a library that aborts makes the application unavailable, while the
checker's own failure is an error with no verdict) and compares it with the
acknowledgement log; classify() turns that into a verdict in the categories of
Rebello et al. (ATC 2020) plus 'application unavailable', 'database
corruption' (the application's own integrity check fails) and 'not exercised'
(the plan never fired). Tests: campaigns/tests/test_checker.py.

Values are self-describing: "KEY|VERSION|NONCE|CHECKSUM" padded with '.',
so the checker can tell an old value, a value of another key (key
corruption) and garbage (value corruption) apart.
"""
import argparse, hashlib, json, os, random, signal, subprocess, sys, time

import plans
from apps import APPS
from apps.base import short

VALUE_SIZE = 300


def make_value(key, version, rng):
    nonce = "%016x" % rng.getrandbits(64)
    body = "%s|%d|%s" % (key, version, nonce)
    s = body + "|" + hashlib.sha1(body.encode()).hexdigest()[:12]
    return s + "." * max(0, VALUE_SIZE - len(s))


def parse_value(v):
    """(key, version) when v is a well-formed value, else None."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        try:
            v = bytes(v).decode()
        except UnicodeDecodeError:
            return None
    if not isinstance(v, str):
        return None
    parts = v.rstrip(".").split("|")
    if len(parts) != 4:
        return None
    body = "|".join(parts[:3])
    if hashlib.sha1(body.encode()).hexdigest()[:12] != parts[3]:
        return None
    try:
        return parts[0], int(parts[1])
    except ValueError:
        return None


# ---------------------------------------------------------------- run

# Block mode: the driver names the faultfs binary whose `ctl` arms the plan on
# the data directory's file system (unset: a FUSE mount's control file).
BLOCK_FAULTFS = os.environ.get("CAMPAIGN_BLOCK_FAULTFS") or None


def run(a):
    rng = random.Random(a.seed)
    app = APPS[a.app]
    db = app.Client(a)
    hooklog = open(a.report + ".hooks.log", "a")
    acks = open(a.acks, "a")
    report = {"app": a.app, "mode": a.mode, "phases": {}, "errors": {}, "first_error": None,
              "opened": False}

    def save():
        with open(a.report + ".tmp", "w") as f:
            json.dump(report, f, indent=1)
        os.replace(a.report + ".tmp", a.report)    # whole, even when a crash kills this process

    # The driver's phase releases a stall a few seconds after this file appears.
    started = os.path.join(os.path.dirname(a.acks), "fault-started")
    try:
        db.open(create=True)
        report["opened"] = True
    except Exception as e:
        report["open_error"] = short(e)
        save()
        return 3
    def log_ack(rec):
        acks.write(json.dumps(rec) + "\n")
        acks.flush()
        os.fsync(acks.fileno())

    versions = {}
    next_key = [0]
    consecutive = [0]

    def one(phase, op_index):
        st = report["phases"].setdefault(phase, {"ok": 0, "failed": 0, "seconds": 0.0})
        if phase == "preload" or not versions or (rng.random() < 0.3):
            k = "k%05d" % next_key[0]
            next_key[0] += 1
        else:
            k = rng.choice(sorted(versions))
        ver = versions.get(k, 0) + 1
        versions[k] = ver
        v = make_value(k, ver, rng)
        t0 = time.time()
        if a.crash_flag:
            # Power loss: the crash may cut this operation short; its key is in
            # doubt until the final record below replaces this one.
            log_ack({"key": k, "version": ver, "value": v, "ok": None, "pending": True, "phase": phase,
                     "t": round(t0, 3)})
        err = None
        try:
            db.put(k, v)
        except Exception as e:
            err = short(e)
        dt = time.time() - t0
        st["seconds"] += dt
        rec = {"key": k, "version": ver, "value": v, "ok": err is None, "phase": phase,
               "t": round(t0, 3), "dt": round(dt, 4)}
        if err and a.crash_flag and os.path.exists(a.crash_flag):
            # It failed once the crash was requested: the server died under it,
            # maybe after its commit. In doubt, not failed.
            rec["ok"] = None
            rec["in_doubt"] = "the crash"
        if err:
            rec["error"] = err
            st["failed"] += 1
            report["errors"][err] = report["errors"].get(err, 0) + 1
            if report["first_error"] is None:
                report["first_error"] = {"phase": phase, "op": op_index, "error": err}
            consecutive[0] += 1
            if app.server:
                time.sleep(0.5)   # a client waits a little before it tries again
        else:
            st["ok"] += 1
            consecutive[0] = 0
        log_ack(rec)
        if a.crash_flag:
            save()     # the crash kills this process: what it did so far stays told
        if app.checkpoint_every and (op_index + 1) % app.checkpoint_every == 0:
            try:
                db.checkpoint()
            except Exception as e:
                m = "CHECKPOINT: " + short(e)
                report["errors"][m] = report["errors"].get(m, 0) + 1

    def phase(name, n):
        t = time.time()
        consecutive[0] = 0
        report["phases"].setdefault(name, {"ok": 0, "failed": 0, "seconds": 0.0})
        for i in range(n):
            if consecutive[0] >= a.give_up:
                report["phases"][name]["gave_up_after"] = consecutive[0]
                report["gave_up"] = True
                break
            one(name, i)
        report["phases"].setdefault(name, {"ok": 0, "failed": 0, "seconds": 0.0})["wall"] = round(time.time() - t, 2)
        save()

    def linger():
        """The plan must act inside the fault window: an application may hold
        its writes back (Redis everysec fsyncs once a second; a database may
        write its data files only at a checkpoint). Until the events show the
        plan acting, keep committing, slowly, for at most as many operations
        again and --linger-seconds."""
        if not (a.events and a.plan and plans.lines(a.plan, "")) or report.get("gave_up") \
                or plans.armed_at_restart(a.plan, bool(BLOCK_FAULTFS)):
            return
        deadline, n = time.time() + a.linger_seconds, 0
        while n < a.ops and time.time() < deadline and consecutive[0] < a.give_up:
            if plans.fired_in_file(a.events)["total"]:
                break
            one("fault", a.ops + n)
            n += 1
            time.sleep(0.05)
        report["phases"]["fault"]["linger_ops"] = n

    phase("preload", a.preload)
    print("CAMPAIGN-FAULT", flush=True)
    # In this process, through the control file: a child started now would
    # inherit the database's descriptors, and its closes (FLUSH) could meet the plan.
    # The capacity plan sizes the free space from what the window is about to write.
    try:
        redefined = dict(x.split("=", 1) for x in a.plan_line)
        glob = (app.disk_glob or app.data_glob) if BLOCK_FAULTFS else app.data_glob
        applied = plans.apply(a.data, a.plan, glob, os.path.dirname(a.acks), a.ops * VALUE_SIZE, redefined,
                              faultfs=BLOCK_FAULTFS)
        hooklog.write("[%.3f] applied: %s\n" % (time.time(), " / ".join(applied) or "nothing"))
    except (RuntimeError, OSError) as e:
        hooklog.write("[%.3f] applying the plan failed: %s\n" % (time.time(), e))
        report["inject_failed"] = True
    hooklog.flush()
    open(started, "w").close()
    phase("fault", a.ops)
    linger()
    if a.events:
        report["fired_in_window"] = plans.fired_in_file(a.events)
    print("CAMPAIGN-END", flush=True)
    # Through the control file, not a child process (as above: flush-eio
    # would fire on the closes of the inherited descriptors).
    try:
        hooklog.write("[%.3f] end: %s\n" % (time.time(), plans.end(a.data, a.plan, faultfs=BLOCK_FAULTFS)))
    except (RuntimeError, OSError) as e:
        # (a block target's file system may have gone read-only: the filler stays)
        hooklog.write("[%.3f] ending the fault failed: %s\n" % (time.time(), e))
    hooklog.flush()
    phase("after", a.after)
    if app.checkpoint_every:
        # What checkpoint_timeout would do a few minutes later: a checkpoint
        # after the fault is gone (it must not declare lost pages written).
        try:
            db.checkpoint()
            report["final_checkpoint"] = "ok"
        except Exception as e:
            report["final_checkpoint"] = short(e)
    report["keys_written"] = len(versions)
    save()
    acks.close()
    sys.stdout.flush()
    db.crash()


# ---------------------------------------------------------------- check

# Worst first: a run's verdict is the worst category present.
SEVERITY = ["application unavailable", "key corruption", "value corruption", "database corruption",
            "key not found", "old value", "false failure", "not exercised"]
CATEGORIES = SEVERITY + ["correct"]


class CheckerError(Exception):
    """The checker itself failed: no verdict (a campaign error, never a category)."""


def load_acks(path):
    hist = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue   # (a line cut short by the crash)
            h = hist.setdefault(r["key"], [])
            if h and h[-1].get("pending") and h[-1]["version"] == r["version"] and not r.get("pending"):
                h[-1] = r      # the operation's outcome replaces its pending record
            else:
                h.append(r)
    return hist


def classify_key(key, history, got):
    """One key: history is its operations in order; got is what the app returned (None: absent).
    An operation whose outcome is unknown (ok None: the crash cut it short)
    may or may not be there: either is correct."""
    acked = [h for h in history if h["ok"]]
    last_ok = acked[-1] if acked else None
    if got is None:
        return "key not found" if last_ok else "correct"
    if isinstance(got, (bytes, bytearray, memoryview)):
        try:
            got = bytes(got).decode()
        except UnicodeDecodeError:
            return "value corruption"
    if last_ok and got == last_ok["value"]:
        return "correct"
    parsed = parse_value(got)
    if parsed is None:
        return "value corruption"
    if parsed[0] != key:
        return "key corruption"
    match = [h for h in history if h["value"] == got]
    if not match:
        return "value corruption"
    h = match[-1]
    later_ok = last_ok is not None and last_ok["version"] > h["version"]
    if h["ok"] is None and not later_ok:
        return "correct"           # in doubt, and present
    if not h["ok"] and not later_ok:
        return "false failure"     # told failed, data present
    return "old value"              # an older acknowledged (or an overwritten failed) value


def example(key, history, got):
    g = got if got is None else (bytes(got).decode(errors="replace") if not isinstance(got, str) else got)
    return {"key": key, "got": g and g.rstrip(".")[:80],
            "acked": [x["value"].rstrip(".")[:60] for x in history if x["ok"]][-2:],
            "failed": [x["value"].rstrip(".")[:60] for x in history if x["ok"] is False][-2:]}


def classify(hist, reading, fired=None):
    """The run's verdict (pure). hist: load_acks(); reading: what the restarted
    application returned, {"unavailable": why or None, "data": {key: value},
    "lookup_errors": {key: error}, "integrity": [problem, ...]}; fired: how
    often the plan acted ({"total": N, ...}), None when no fault was planned.
    Per key: classify_key; a lookup that errors and a key never written are key
    corruption; each integrity problem is database corruption; a planned fault
    that never fired adds "not exercised". The verdict is the worst present."""
    counts = {c: 0 for c in CATEGORIES}
    examples = {}
    acked = sum(1 for h in hist.values() if any(x["ok"] for x in h))
    if reading.get("unavailable"):
        counts["application unavailable"] = max(1, acked)
        examples["application unavailable"] = reading["unavailable"]
    else:
        data, errors = reading.get("data", {}), reading.get("lookup_errors", {})
        for k, h in sorted(hist.items()):
            if k in errors:
                c = "key corruption"
                examples.setdefault(c, "%s: %s" % (k, errors[k]))
            else:
                c = classify_key(k, h, data.get(k))
                if c != "correct" and c not in examples:
                    examples[c] = example(k, h, data.get(k))
            counts[c] += 1
        extra = sorted(k for k in data if k not in hist)
        if extra:
            counts["key corruption"] += len(extra)
            examples.setdefault("key corruption", {"unknown keys": extra[:5]})
        problems = reading.get("integrity", [])
        if problems:
            counts["database corruption"] = len(problems)
            examples["database corruption"] = problems[:3]
    if fired is not None and not fired.get("total"):
        counts["not exercised"] = 1
        examples["not exercised"] = "the fault plan never acted (no injection with an errno, no write dropped or stalled)"
    present = [c for c in SEVERITY if counts[c]]
    return {"verdict": present[0] if present else "correct", "categories": present or ["correct"],
            "counts": counts, "examples": examples, "acked_keys": acked,
            "failed_ops": sum(1 for h in hist.values() for x in h if x["ok"] is False),
            "in_doubt_ops": sum(1 for h in hist.values() for x in h if x["ok"] is None)}


def encode(v):
    """A value as JSON: text, None, or {"bytes_hex": ...} for bytes that are not UTF-8."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        try:
            return bytes(v).decode()
        except UnicodeDecodeError:
            return {"bytes_hex": bytes(v).hex()}
    return v


def decode(v):
    return bytes.fromhex(v["bytes_hex"]) if isinstance(v, dict) else v


def read_back(a):
    """`read` (a child of `check`): open the restarted application and read every
    key. An error of the application's library is the application failing
    ("unavailable", a failed lookup, an integrity problem); any other exception
    is this program's own bug and escapes (exit 1)."""
    db = APPS[a.app].Client(a)
    out = {"unavailable": None, "data": {}, "lookup_errors": {}, "integrity": [], "notes": []}

    def save():
        with open(a.out, "w") as f:
            json.dump(out, f)
        return 0

    try:
        db.open(create=False)
    except db.errors as e:
        out["unavailable"] = "restart/open failed: " + short(e)
        return save()
    if hasattr(db, "integrity"):
        out["integrity"] = db.integrity()
    try:
        data, notes = db.scan()
        out["notes"] += notes
    except db.errors as e:
        out["notes"].append("full scan failed, one lookup per key: " + short(e))
        data = {}
        for k in load_acks(a.acks):
            try:
                data[k] = db.get(k)
            except db.errors as e:
                out["lookup_errors"][k] = short(e)
    out["data"] = {k: encode(v) for k, v in data.items()}
    return save()


def read_in_child(a):
    """read_back in a child process: a library that aborts or crashes while
    reading its data (LMDB's assertions do) makes the application unavailable,
    not the checker."""
    tmp = a.out + ".reading.json"
    args = [sys.executable, os.path.abspath(__file__), "read", "--app", a.app, "--mode", a.mode,
            "--data", a.data, "--acks", a.acks, "--out", tmp]
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=a.read_timeout)
    except subprocess.TimeoutExpired:
        return {"unavailable": "reading the data did not finish in %d s" % a.read_timeout}
    tail = " ".join(r.stderr.strip().splitlines()[-2:])[:200]
    if r.returncode < 0:
        return {"unavailable": "the application crashed reading its data (%s): %s"
                % (signal.Signals(-r.returncode).name, tail)}
    if r.returncode != 0:
        raise CheckerError("the reader failed (exit %d): %s" % (r.returncode, r.stderr.strip()[-1000:]))
    with open(tmp) as f:
        reading = json.load(f)
    os.unlink(tmp)
    reading["data"] = {k: decode(v) for k, v in reading["data"].items()}
    return reading


def reported_texts(reading, workload_report):
    """Everything the application said went wrong: its errors during the run
    (the workload's report), at the restart, in lookups and its integrity check."""
    said = [reading.get("unavailable") or ""] + list(reading.get("lookup_errors", {}).values())
    said += list(reading.get("integrity", [])) + list(reading.get("notes", []))
    try:
        with open(workload_report) as f:
            said += list(json.load(f).get("errors", {}))
    except (OSError, ValueError):
        pass
    return [t for t in said if t]


def check(a):
    hist = load_acks(a.acks)
    reading = read_in_child(a)
    fired = plans.fired_in_file(a.events) if a.events else {"total": 0}
    if a.restart_events:
        # (what fired on the re-mount: corrupt-read is armed there)
        for k, n in plans.fired_in_file(a.restart_events).items():
            fired[k] = fired.get(k, 0) + n
    if a.tamper_log and os.path.exists(a.tamper_log) and os.path.getsize(a.tamper_log):
        fired["tampered"] = 1
        fired["total"] += 1
    verdict = classify(hist, reading, fired if plans.fault_expected(a.plan) else None)
    verdict.update({"app": a.app, "mode": a.mode, "plan": a.plan, "keys_logged": len(hist), "fired": fired,
                    "notes": reading.get("notes", []), "config": "unsafe" if a.unsafe else "safe"})
    if plans.is_crash(a.plan):
        verdict["outcome"] = list(plans.power_loss_outcome(verdict, a.unsafe, block=a.block))
    elif plans.is_corrupt(a.plan):
        said = reported_texts(reading, os.path.join(os.path.dirname(a.acks), "workload.json"))
        verdict["outcome"] = [plans.corruption_outcome(verdict, said)]
        verdict["corruption_reported"] = [t[:200] for t in said if plans.mentions_corruption(t)][:5]
    with open(a.out, "w") as f:
        json.dump(verdict, f, indent=1)
    print(json.dumps({k: verdict.get(k) for k in ("verdict", "categories", "acked_keys", "failed_ops", "fired", "outcome")}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["run", "check", "read"])
    p.add_argument("--app", required=True, choices=sorted(APPS))
    p.add_argument("--mode", default="default")
    p.add_argument("--data", required=True, help="the mounted data directory")
    p.add_argument("--acks", required=True, help="acknowledgement log (outside the mount)")
    p.add_argument("--report", help="run: what the application did (JSON)")
    p.add_argument("--out", help="check: the verdict (JSON)")
    p.add_argument("--preload", type=int, default=100)
    p.add_argument("--ops", type=int, default=150)
    p.add_argument("--after", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--plan", default="", help="the fault plan (run: linger until it fires; check: 'not exercised' when it never did)")
    p.add_argument("--events", default="", help="the mount's events file (how often the plan fired)")
    p.add_argument("--linger-seconds", type=float, default=15)
    p.add_argument("--read-timeout", type=int, default=300, help="check: reading back longer than this is unavailable")
    p.add_argument("--tamper-log", default="", help="check: the seeded self-test's log (non-empty: it fired)")
    p.add_argument("--plan-line", action="append", default=[], help="run: PLAN=LINE arms LINE for PLAN")
    p.add_argument("--give-up", type=int, default=20, help="stop a phase after this many failures in a row")
    p.add_argument("--unsafe", action="store_true", help="the application's unsafe configuration (apps/APP.py)")
    p.add_argument("--block", action="store_true", help="check: the data lived on a block-mode file system")
    p.add_argument("--restart-events", default="", help="check: the re-mount's events file (its firings count too)")
    p.add_argument("--crash-flag", default="", help="run: power loss: log each operation before it (pending) "
                                                     "and count a failure once FILE exists as in doubt")
    a = p.parse_args()
    if a.cmd == "run":
        sys.exit(run(a))
    if a.cmd == "read":
        sys.exit(read_back(a))
    try:
        check(a)
    except CheckerError as e:
        print("campaign checker error: %s" % e, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
