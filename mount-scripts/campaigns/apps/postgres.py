"""PostgreSQL 15 (Debian's postgresql): our own cluster, as user postgres, on
127.0.0.1:54329 (socket in /tmp), data directory MNT/pgdata.
Modes: default settings (data_sync_retry=off: PANIC when an fsync fails),
and data_sync_retry=on (report the failed fsync, retry at the next checkpoint).
Unsafe: fsync=off (nothing is ever flushed; data_sync_retry then means nothing)."""
import os, re, shutil, subprocess

from .base import App as Server

PG_BIN = "/usr/lib/postgresql/15/bin"
PORT = 54329


class Client:
    def __init__(self, a):
        import psycopg2
        self.pg = psycopg2
        self.errors = (psycopg2.Error, OSError)
        self.conn = None

    def connect(self):
        c = self.pg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname="postgres", connect_timeout=5)
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
        os._exit(0)  # the server is killed by the driver


def as_postgres(*args, **kw):
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], **kw)


def chown_postgres(path):
    shutil.chown(path, "postgres", "postgres")


def summarize_log(text):
    """One line from a server log (pure): PANICs, ERRORs, WARNINGs with the
    first of each, a killed process, crash recovery, FATAL."""
    out = []

    def first(pattern):
        m = re.search(pattern, text, re.M)
        return m.group(1) if m else ""

    for level, pattern in (("PANIC", r"PANIC:"), ("ERROR", r" ERROR: "), ("WARNING", r"WARNING: ")):
        n = len(re.findall(pattern, text))
        if n:
            out.append("%s x%d (%s)" % (level, n, first(r"%s *(.*)$" % pattern)[:100]))
    if "terminated by signal" in text:
        out.append("a server process was killed (%s)" % first(r"LOG: *(.*terminated by signal.*)$")[:80])
    if "reinitializing" in text:
        out.append("postmaster restarted the server (crash recovery)")
    if "redo done" in text:
        out.append("recovery replayed WAL (%s)" % first(r"LOG: *(redo done.*)$")[:60])
    if "FATAL: " in text:
        out.append("FATAL: " + first(r"FATAL: *(.*)$")[:100])
    return ";".join(out)


class App(Server):
    name = "postgres"
    modes = ("default", "retry")
    data_glob = "pgdata/base/**"
    disk_glob = "pgdata/base/*/*"
    packages = ("postgresql", "python3-psycopg2")
    server = True
    port = PORT
    checkpoint_every = 40
    unsafe_setting = "fsync=off"
    unsafe_modes = ("default",)
    Client = Client

    def prepare(self, data, mode, out):
        """A copy of a template cluster (made once per campaign) whose table
        exists and is checkpointed: the first data-file writeback in the fault
        window is then the table's, not a catalog's."""
        tpl = os.path.join(out, ".template-postgres")
        if not os.path.exists(os.path.join(tpl, ".complete")):
            shutil.rmtree(tpl, ignore_errors=True)
            os.makedirs(tpl, mode=0o700)
            chown_postgres(tpl)
            log = tpl + ".log"
            open(log, "w").close()
            chown_postgres(log)
            as_postgres(PG_BIN + "/initdb", "-D", tpl, "-A", "trust", "-U", "postgres",
                        check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(tpl, "postgresql.conf"), "a") as f:
                f.write("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '/tmp'\n" % PORT)
            as_postgres(PG_BIN + "/pg_ctl", "-D", tpl, "-l", log, "-w", "start", check=True, stdout=subprocess.DEVNULL)
            try:
                as_postgres("psql", "-q", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "-d", "postgres",
                            "-c", "CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL)", "-c", "CHECKPOINT",
                            check=True)
            finally:
                as_postgres(PG_BIN + "/pg_ctl", "-D", tpl, "-w", "stop", check=True, stdout=subprocess.DEVNULL)
            open(os.path.join(tpl, ".complete"), "w").close()
        pgdata = os.path.join(data, "pgdata")
        subprocess.run(["cp", "-a", tpl, pgdata], check=True)
        os.unlink(os.path.join(pgdata, ".complete"))
        if mode == "retry":
            with open(os.path.join(pgdata, "postgresql.conf"), "a") as f:
                f.write("data_sync_retry = on\n")
        if self.unsafe:
            with open(os.path.join(pgdata, "postgresql.conf"), "a") as f:
                f.write("fsync = off\n")

    def start(self, data, mode, log):
        pgdata = os.path.join(data, "pgdata")
        open(log, "w").close()
        chown_postgres(log)
        r = as_postgres(PG_BIN + "/pg_ctl", "-D", pgdata, "-l", log, "-w", "-t", "90", "start",
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:   # the postmaster's pid, also when it came up only half-way (to kill it)
            with open(os.path.join(pgdata, "postmaster.pid")) as f:
                self.write_pid(int(f.readline()))
        except (OSError, ValueError):
            pass
        return r.returncode == 0

    def alive(self):
        return self.server_running() and subprocess.run(
            [PG_BIN + "/pg_isready", "-q", "-U", "postgres", "-d", "postgres", "-h", "127.0.0.1",
             "-p", str(PORT), "-t", "5"]).returncode == 0

    def log_summary(self, log):
        try:
            with open(log, errors="replace") as f:
                return summarize_log(f.read())
        except OSError:
            return ""
