#!/usr/bin/python3
"""faultfs campaign workload and checker (one program, one backend per application).

  workload.py run   --app APP --mode MODE --data DIR --acks FILE --report FILE [...]
  workload.py check --app APP --mode MODE --data DIR --acks FILE --out FILE

`run` puts keys into the application, one commit per operation, and appends
one JSON line per operation to --acks (a file OUTSIDE the mount, fsync'd
after every line): the key, the value, whether the application said the
commit succeeded, and its error text when it did not. In the middle it runs
--inject (the fault plan), later --end (clears the fault), and at the end it
simulates a crash: an embedded database (sqlite, lmdb, leveldb) is left
without closing it (os._exit); a server is killed by the campaign script.

`check` reads every key back from the restarted application and compares it
with the acknowledgement log; it writes a verdict in the categories of
Rebello et al. (ATC 2020) plus 'application unavailable'.

Values are self-describing: "KEY|VERSION|NONCE|CHECKSUM" padded with '.',
so the checker can tell an old value, a value of another key (key
corruption) and garbage (value corruption) apart.
"""
import argparse, hashlib, json, os, random, subprocess, sys, threading, time

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

    def scan(self):
        notes = []
        try:
            r = self.conn.execute("PRAGMA integrity_check").fetchall()
            notes.append("integrity_check: " + "; ".join(str(x[0]) for x in r[:3]))
        except Exception as e:
            notes.append("integrity_check failed: " + short(e))
        try:
            return dict(self.conn.execute("SELECT k, v FROM kv").fetchall()), {}, notes
        except self.sqlite3.OperationalError as e:
            if "no such table" not in str(e):
                notes.append("full scan failed: " + short(e))
                return None, {}, notes
            notes.append("the table is gone (every key is absent): " + short(e))
            return {}, {}, notes
        except Exception as e:
            notes.append("full scan failed: " + short(e))
            return None, {}, notes

    def get(self, k):
        r = self.conn.execute("SELECT v FROM kv WHERE k=?", (k,)).fetchone()
        return None if r is None else r[0]

    def crash(self):
        os._exit(0)


class Postgres:
    def __init__(self, a):
        import psycopg2
        self.pg = psycopg2
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
            return dict(cur.fetchall()), {}, []

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
        return out, {}, []

    def get(self, k):
        return self.conn.get(k)

    def crash(self):
        os._exit(0)


class LMDB:
    def __init__(self, a):
        import lmdb
        self.lmdb = lmdb
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
            return {bytes(k).decode(errors="replace"): bytes(v) for k, v in txn.cursor()}, {}, []

    def get(self, k):
        with self.env.begin() as txn:
            return txn.get(k.encode())

    def crash(self):
        os._exit(0)


class LevelDB:
    def __init__(self, a):
        import plyvel
        self.plyvel = plyvel
        self.path = os.path.join(a.data, "leveldb")
        self.db = None

    def open(self, create):
        # A small memtable so that table files (*.ldb) are written and
        # compacted inside the fault window.
        self.db = self.plyvel.DB(self.path, create_if_missing=create, write_buffer_size=64 << 10)

    def put(self, k, v):
        self.db.put(k.encode(), v.encode(), sync=True)

    def scan(self):
        return {k.decode(errors="replace"): v for k, v in self.db.iterator()}, {}, []

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

    phase("preload", a.preload)
    print("CAMPAIGN-FAULT", flush=True)
    if sh(a.inject, hooklog) != 0:
        report["inject_failed"] = True
    open(started, "w").close()
    phase("fault", a.ops)
    print("CAMPAIGN-END", flush=True)
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

CATEGORIES = ["correct", "old value", "false failure", "key corruption", "value corruption",
              "key not found", "application unavailable"]
SEVERITY = ["application unavailable", "key corruption", "value corruption", "key not found",
            "old value", "false failure"]


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


def classify(key, history, got):
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


def check(a):
    hist = load_acks(a.acks)
    verdict = {"app": a.app, "mode": a.mode, "keys_logged": len(hist),
               "acked_keys": sum(1 for h in hist.values() if any(x["ok"] for x in h)),
               "failed_ops": sum(1 for h in hist.values() for x in h if not x["ok"]),
               "counts": {c: 0 for c in CATEGORIES}, "examples": {}, "notes": []}

    def finish(v):
        present = [c for c in SEVERITY if verdict["counts"][c]]
        verdict["verdict"] = v if v else (present[0] if present else "correct")
        verdict["categories"] = present or ["correct"]
        with open(a.out, "w") as f:
            json.dump(verdict, f, indent=1)
        print(json.dumps({k: verdict[k] for k in ("verdict", "categories", "acked_keys", "failed_ops")}))

    if a.crashed:
        verdict["notes"].append(a.crashed)
        verdict["counts"]["application unavailable"] = verdict["acked_keys"]
        return finish("application unavailable")
    db = BACKENDS[a.app](a)
    try:
        db.open(create=False)
        data, _, notes = db.scan()
        verdict["notes"] += notes
    except Exception as e:
        verdict["notes"].append("restart/read failed: " + short(e))
        verdict["counts"]["application unavailable"] = verdict["acked_keys"]
        return finish("application unavailable")
    if data is None:
        # The full scan failed: fall back to one lookup per key.
        data = {}
        for k in hist:
            try:
                data[k] = db.get(k)
            except Exception as e:
                verdict["counts"]["key corruption"] += 1
                verdict["examples"].setdefault("key corruption", "%s: %s" % (k, short(e)))
                data[k] = KeyError
    for k, h in sorted(hist.items()):
        got = data.get(k)
        if got is KeyError:
            continue
        c = classify(k, h, got)
        verdict["counts"][c] += 1
        if c != "correct" and c not in verdict["examples"]:
            g = got if got is None else (bytes(got).decode(errors="replace") if not isinstance(got, str) else got)
            verdict["examples"][c] = {"key": k, "got": g and g.rstrip(".")[:80],
                                      "acked": [x["value"].rstrip(".")[:60] for x in h if x["ok"]][-2:],
                                      "failed": [x["value"].rstrip(".")[:60] for x in h if not x["ok"]][-2:]}
    extra = [k for k in data if k not in hist]
    if extra:
        verdict["counts"]["key corruption"] += len(extra)
        verdict["examples"].setdefault("key corruption", {"unknown keys": extra[:5]})
    finish(None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["run", "check"])
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
    p.add_argument("--crashed", default="", help="check: the first check crashed; record the application as unavailable")
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--give-up", type=int, default=20, help="stop a phase after this many failures in a row")
    a = p.parse_args()
    if a.cmd == "run":
        sys.exit(run(a))
    check(a)


if __name__ == "__main__":
    main()
