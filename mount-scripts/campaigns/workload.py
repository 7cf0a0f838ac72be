#!/usr/bin/python3
"""faultfs campaign workload and checker (one program, one backend per application).

  workload.py run   --app APP --mode MODE --data DIR --acks FILE --report FILE [...]
  workload.py check --app APP --mode MODE --data DIR --acks FILE --out FILE --plan PLAN --events FILE
  workload.py read  ...   (check's child: reads the restarted application's data)

`run` puts keys into the application, one commit per operation, and appends
one JSON line per operation to --acks (a file OUTSIDE the mount, fsync'd
after every line): the key, the value, whether the application said the
commit succeeded, and its error text when it did not. In the middle it runs
--inject (the fault plan), later --end (clears the fault), and at the end it
simulates a crash: an embedded database (sqlite, lmdb, leveldb) is left
without closing it (os._exit); a server is killed by the campaign script.

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


def short(e):
    s = ("%s: %s" % (type(e).__name__, e)).strip().replace("\n", " ")
    return s[:200]


# ---------------------------------------------------------------- backends

class SQLite:
    def __init__(self, a):
        import sqlite3
        self.sqlite3 = sqlite3
        self.errors = (sqlite3.Error, OSError)
        self.path = os.path.join(a.data, "sqlite", "test.db")
        self.mode = a.mode
        self.conn = None

    def open(self, create):
        if create:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        c = self.sqlite3.connect(self.path, isolation_level=None, timeout=10)
        if create:
            c.execute("PRAGMA journal_mode=%s" % ("WAL" if self.mode == "wal" else "DELETE"))
            c.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        if self.mode == "wal":
            # The default (1000 pages) is never reached by this small workload;
            # 100 pages makes checkpoints (the main file's writes) happen in the fault window.
            c.execute("PRAGMA wal_autocheckpoint=100")
        c.execute("PRAGMA synchronous=FULL")
        self.conn = c

    def put(self, k, v):
        c = self.conn
        try:
            c.execute("BEGIN IMMEDIATE")
            c.execute("INSERT INTO kv(k, v) VALUES(?, ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (k, v))
            c.execute("COMMIT")
        except Exception:
            try:
                if c.in_transaction:
                    c.execute("ROLLBACK")
            except Exception:
                pass
            raise

    def integrity(self):
        """What PRAGMA integrity_check finds wrong (it prints 'ok' when nothing)."""
        try:
            rows = [str(r[0]) for r in self.conn.execute("PRAGMA integrity_check").fetchall()]
        except self.sqlite3.Error as e:
            return ["integrity_check failed: " + short(e)]
        return [] if rows == ["ok"] else rows[:10]

    def scan(self):
        try:
            return dict(self.conn.execute("SELECT k, v FROM kv").fetchall()), []
        except self.sqlite3.OperationalError as e:
            if "no such table" not in str(e):
                raise
            return {}, ["the table is gone (every key is absent): " + short(e)]

    def get(self, k):
        r = self.conn.execute("SELECT v FROM kv WHERE k=?", (k,)).fetchone()
        return None if r is None else r[0]

    def crash(self):
        os._exit(0)


class Postgres:
    def __init__(self, a):
        import psycopg2
        self.pg = psycopg2
        self.errors = (psycopg2.Error, OSError)
        self.port = a.port
        self.conn = None
        self.ops = 0

    def connect(self):
        c = self.pg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", connect_timeout=5)
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute("SET statement_timeout = '20s'")
        self.conn = c

    def open(self, create):
        self.connect()
        if create:
            with self.conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS kv (k text PRIMARY KEY, v text NOT NULL)")

    def put(self, k, v):
        if self.conn is None or self.conn.closed:
            self.connect()
        try:
            with self.conn.cursor() as cur:
                cur.execute("INSERT INTO kv(k, v) VALUES(%s, %s) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (k, v))
        except (self.pg.OperationalError, self.pg.InterfaceError):
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None
            raise
        self.ops += 1

    def checkpoint(self):
        if self.conn is None or self.conn.closed:
            self.connect()
        with self.conn.cursor() as cur:
            cur.execute("CHECKPOINT")

    def scan(self):
        with self.conn.cursor() as cur:
            cur.execute("SELECT k, v FROM kv")
            return dict(cur.fetchall()), []

    def get(self, k):
        with self.conn.cursor() as cur:
            cur.execute("SELECT v FROM kv WHERE k=%s", (k,))
            r = cur.fetchone()
            return None if r is None else r[0]

    def crash(self):
        os._exit(0)  # the server is killed by the campaign script


class Redis:
    def __init__(self, a):
        import redis
        self.redis = redis
        self.errors = (redis.RedisError, OSError)
        self.port = a.port
        self.conn = None

    def open(self, create):
        self.conn = self.redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=20, socket_connect_timeout=5)
        self.conn.ping()

    def put(self, k, v):
        if self.conn.set(k, v) is not True:
            raise RuntimeError("SET did not reply OK")

    def scan(self):
        out = {}
        for k in self.conn.scan_iter(count=1000):
            out[k.decode(errors="replace")] = self.conn.get(k)
        return out, []

    def get(self, k):
        return self.conn.get(k)

    def crash(self):
        os._exit(0)


class LMDB:
    def __init__(self, a):
        import lmdb
        self.lmdb = lmdb
        self.errors = (lmdb.Error, OSError)
        self.path = os.path.join(a.data, "lmdb")
        self.env = None

    def open(self, create):
        if create:
            os.makedirs(self.path, exist_ok=True)
        # Defaults: sync=True (fdatasync at every commit), no writemap.
        self.env = self.lmdb.open(self.path, map_size=64 << 20, sync=True, metasync=True)

    def put(self, k, v):
        with self.env.begin(write=True) as txn:
            txn.put(k.encode(), v.encode())

    def scan(self):
        with self.env.begin() as txn:
            return {bytes(k).decode(errors="replace"): bytes(v) for k, v in txn.cursor()}, []

    def get(self, k):
        with self.env.begin() as txn:
            return txn.get(k.encode())

    def crash(self):
        os._exit(0)


class LevelDB:
    def __init__(self, a):
        import plyvel
        self.plyvel = plyvel
        self.errors = (plyvel.Error, OSError)
        self.path = os.path.join(a.data, "leveldb")
        self.db = None

    def open(self, create):
        # A small memtable so that table files (*.ldb) are written and
        # compacted inside the fault window.
        self.db = self.plyvel.DB(self.path, create_if_missing=create, write_buffer_size=64 << 10)

    def put(self, k, v):
        self.db.put(k.encode(), v.encode(), sync=True)

    def scan(self):
        return {k.decode(errors="replace"): v for k, v in self.db.iterator()}, []

    def get(self, k):
        return self.db.get(k.encode())

    def crash(self):
        os._exit(0)


BACKENDS = {"sqlite": SQLite, "postgres": Postgres, "redis": Redis, "lmdb": LMDB, "leveldb": LevelDB}


# ---------------------------------------------------------------- run

def sh(cmd, log):
    if not cmd:
        return 0
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    log.write("[%.3f] hook: %s -> exit %d %s%s\n" % (time.time(), cmd, r.returncode, r.stdout.strip(), r.stderr.strip()))
    log.flush()
    return r.returncode


def run(a):
    rng = random.Random(a.seed)
    db = BACKENDS[a.app](a)
    hooklog = open(a.report + ".hooks.log", "a")
    acks = open(a.acks, "a")
    report = {"app": a.app, "mode": a.mode, "phases": {}, "errors": {}, "first_error": None,
              "opened": False}

    def save():
        with open(a.report, "w") as f:
            json.dump(report, f, indent=1)

    # The release of a stall runs in a process started NOW, before the
    # database is open: a child forked later would inherit the database's
    # descriptors, and closing them (close_range, or O_CLOEXEC at exec) does
    # a FUSE flush that waits for the stalled writeback: a deadlock.
    started = a.report + ".fault-started"
    if os.path.exists(started):
        os.unlink(started)
    if a.release and a.release_after > 0:
        subprocess.Popen(["bash", "-c", 'for i in $(seq 6000); do [ -e "$1" ] && break; sleep 0.1; done; sleep "$2"; '
                          'echo "[$(date +%s.%N)] release: $3" >>"$4"; eval "$3" >>"$4" 2>&1',
                          "release", started, str(a.release_after), a.release, a.report + ".hooks.log"],
                         stdin=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    try:
        db.open(create=True)
        report["opened"] = True
    except Exception as e:
        report["open_error"] = short(e)
        save()
        return 3
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
        err = None
        try:
            db.put(k, v)
        except Exception as e:
            err = short(e)
        dt = time.time() - t0
        st["seconds"] += dt
        rec = {"key": k, "version": ver, "value": v, "ok": err is None, "phase": phase,
               "t": round(t0, 3), "dt": round(dt, 4)}
        if err:
            rec["error"] = err
            st["failed"] += 1
            report["errors"][err] = report["errors"].get(err, 0) + 1
            if report["first_error"] is None:
                report["first_error"] = {"phase": phase, "op": op_index, "error": err}
            consecutive[0] += 1
            if a.app in ("postgres", "redis"):
                time.sleep(0.5)   # a client waits a little before it tries again
        else:
            st["ok"] += 1
            consecutive[0] = 0
        acks.write(json.dumps(rec) + "\n")
        acks.flush()
        os.fsync(acks.fileno())
        if a.checkpoint_every and isinstance(db, Postgres) and (op_index + 1) % a.checkpoint_every == 0:
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
        if not (a.events and a.plan and plans.lines(a.plan, "")) or report.get("gave_up"):
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
    # What the window is about to write: the capacity plan sizes the free space from it.
    os.environ["CAMPAIGN_WINDOW_BYTES"] = str(a.ops * VALUE_SIZE)
    if sh(a.inject, hooklog) != 0:
        report["inject_failed"] = True
    open(started, "w").close()
    phase("fault", a.ops)
    linger()
    if a.events:
        report["fired_in_window"] = plans.fired_in_file(a.events)
    print("CAMPAIGN-END", flush=True)
    if a.plan:
        # Through the control file, not a child process: a child forked now
        # would close the database's inherited descriptors, and those closes
        # (FLUSH) would meet the still-armed plan (flush-eio fired on them).
        hooklog.write("[%.3f] end: %s\n" % (time.time(), plans.end_by_control(a.data, a.plan)))
        hooklog.flush()
    else:
        sh(a.end, hooklog)
    phase("after", a.after)
    if isinstance(db, Postgres):
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
                continue
            hist.setdefault(r["key"], []).append(r)
    return hist


def classify_key(key, history, got):
    """One key: history is its operations in order; got is what the app returned (None: absent)."""
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
    if not h["ok"] and not later_ok:
        return "false failure"     # told failed, data present
    return "old value"              # an older acknowledged (or an overwritten failed) value


def example(key, history, got):
    g = got if got is None else (bytes(got).decode(errors="replace") if not isinstance(got, str) else got)
    return {"key": key, "got": g and g.rstrip(".")[:80],
            "acked": [x["value"].rstrip(".")[:60] for x in history if x["ok"]][-2:],
            "failed": [x["value"].rstrip(".")[:60] for x in history if not x["ok"]][-2:]}


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
            "failed_ops": sum(1 for h in hist.values() for x in h if not x["ok"])}


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
    db = BACKENDS[a.app](a)
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
            "--data", a.data, "--acks", a.acks, "--out", tmp, "--port", str(a.port)]
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


def check(a):
    hist = load_acks(a.acks)
    reading = read_in_child(a)
    fired = plans.fired_in_file(a.events) if a.events else {"total": 0}
    if a.tamper_log and os.path.exists(a.tamper_log) and os.path.getsize(a.tamper_log):
        fired["tampered"] = 1
        fired["total"] += 1
    verdict = classify(hist, reading, fired if plans.fault_expected(a.plan) else None)
    verdict.update({"app": a.app, "mode": a.mode, "plan": a.plan, "keys_logged": len(hist), "fired": fired,
                    "notes": reading.get("notes", [])})
    with open(a.out, "w") as f:
        json.dump(verdict, f, indent=1)
    print(json.dumps({k: verdict[k] for k in ("verdict", "categories", "acked_keys", "failed_ops", "fired")}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["run", "check", "read"])
    p.add_argument("--app", required=True, choices=sorted(BACKENDS))
    p.add_argument("--mode", default="default")
    p.add_argument("--data", required=True, help="the mounted data directory")
    p.add_argument("--acks", required=True, help="acknowledgement log (outside the mount)")
    p.add_argument("--report", help="run: what the application did (JSON)")
    p.add_argument("--out", help="check: the verdict (JSON)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--preload", type=int, default=100)
    p.add_argument("--ops", type=int, default=150)
    p.add_argument("--after", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--inject", default="")
    p.add_argument("--end", default="")
    p.add_argument("--release", default="")
    p.add_argument("--release-after", type=float, default=0)
    p.add_argument("--plan", default="", help="the fault plan (run: linger until it fires; check: 'not exercised' when it never did)")
    p.add_argument("--events", default="", help="the mount's events file (how often the plan fired)")
    p.add_argument("--linger-seconds", type=float, default=15)
    p.add_argument("--read-timeout", type=int, default=300, help="check: reading back longer than this is unavailable")
    p.add_argument("--tamper-log", default="", help="check: the seeded self-test's log (non-empty: it fired)")
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--give-up", type=int, default=20, help="stop a phase after this many failures in a row")
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
