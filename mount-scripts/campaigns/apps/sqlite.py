"""SQLite (Debian's libsqlite3 through python3's sqlite3 module): a library,
no server. Rollback journal (journal_mode=DELETE) and WAL, synchronous=FULL
(unsafe: synchronous=OFF)."""
import json, os

from .base import App as Library, short


class Client:
    def __init__(self, a):
        import sqlite3
        self.sqlite3 = sqlite3
        self.errors = (sqlite3.Error, OSError)
        self.path = os.path.join(a.data, "sqlite", "test.db")
        self.mode = a.mode
        self.unsafe = getattr(a, "unsafe", False)
        self.conn = None

    def open(self, create):
        if create:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        c = self.sqlite3.connect(self.path, isolation_level=None, timeout=10)
        # First: the unsafe setting covers the database's creation too.
        # Unsafe: SQLite never syncs (a commit is acknowledged once it is in the page cache).
        c.execute("PRAGMA synchronous=%s" % ("OFF" if self.unsafe else "FULL"))
        if create:
            c.execute("PRAGMA journal_mode=%s" % ("WAL" if self.mode == "wal" else "DELETE"))
            c.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        if self.mode == "wal":
            # The default (1000 pages) is never reached by this small workload;
            # 100 pages makes checkpoints (the main file's writes) happen in the fault window.
            c.execute("PRAGMA wal_autocheckpoint=100")
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


def tamper_targets(acks_lines):
    """The seeded loss (pure): (k1, k2, old2): delete k1, the first acknowledged
    key; set k2 back to old2, its first acknowledged value (k2: the first other
    key acknowledged more than once), or delete k2 when old2 is None."""
    h = {}
    for line in acks_lines:
        if not line.strip():
            continue
        r = json.loads(line)
        if r["ok"]:
            h.setdefault(r["key"], []).append(r["value"])
    keys = sorted(h)
    multi = [k for k in keys[1:] if len(h[k]) > 1]
    k2 = multi[0] if multi else keys[1]
    return keys[0], k2, (h[k2][0] if multi else None)


class App(Library):
    name = "sqlite"
    modes = ("rollback", "wal")
    data_glob = "sqlite/test.db"
    unsafe_setting = "PRAGMA synchronous=OFF"
    packages = ("sqlite3", "python3")
    Client = Client

    def prepare(self, data, mode, out):
        os.makedirs(os.path.join(data, "sqlite"))

    def tamper(self, data, acks):
        """Self-test: behind SQLite's back (on the re-mounted copy, after the
        crash) delete one acknowledged key and set another one back."""
        import sqlite3
        with open(acks) as f:
            k1, k2, old2 = tamper_targets(f)
        c = sqlite3.connect(os.path.join(data, "sqlite", "test.db"), isolation_level=None)
        try:
            c.execute("DELETE FROM kv WHERE k=?", (k1,))
            if old2 is None:
                c.execute("DELETE FROM kv WHERE k=?", (k2,))
            else:
                c.execute("UPDATE kv SET v=? WHERE k=?", (old2, k2))
        finally:
            c.close()
        return "tampered: deleted %s; %s" % (k1, "deleted " + k2 if old2 is None
                                             else "set %s to its first acknowledged value" % k2)
