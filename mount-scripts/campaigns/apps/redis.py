"""Redis 7 (Debian's redis-server), AOF on, RDB off, 127.0.0.1:63790, data MNT/redis.
Modes: appendfsync always (fsync before every reply) and everysec; unsafe:
appendfsync no (the kernel decides when the AOF reaches the disk)."""
import collections, os, re, subprocess, time

from .base import App as Server

PORT = 63790


class Client:
    def __init__(self, a):
        import redis
        self.redis = redis
        self.errors = (redis.RedisError, OSError)
        self.conn = None

    def open(self, create):
        self.conn = self.redis.Redis(host="127.0.0.1", port=PORT, socket_timeout=20, socket_connect_timeout=5)
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


NOISE = ("overcommit", "Redis is starting", "Server initialized", "Redis version=", "Configuration loaded")


def summarize_log(text):
    """The log's warnings (level '#'), deduplicated, the three most frequent (pure)."""
    seen = collections.Counter()
    for line in text.splitlines():
        if " # " not in line:
            continue
        msg = re.sub(r"^[0-9]*:[A-Z] [^#]*# ", "", line)
        if not any(n in msg for n in NOISE):
            seen[msg] += 1
    top = sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    return ";".join(("%s (x%d)" % (m, n))[:140] for m, n in top)


def ping(timeout=5):
    try:
        r = subprocess.run(["redis-cli", "-p", str(PORT), "ping"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return r.stdout.strip() == "PONG"


class App(Server):
    name = "redis"
    modes = ("always", "everysec")
    data_glob = "redis/**"
    disk_glob = "redis/appendonlydir/*"
    unsafe_setting = "appendfsync no"
    unsafe_modes = ("no",)      # the mode is the appendfsync setting
    packages = ("redis-server", "redis-tools", "python3-redis")
    server = True
    port = PORT
    Client = Client

    def prepare(self, data, mode, out):
        os.makedirs(os.path.join(data, "redis"))

    def start(self, data, mode, log):
        open(log, "w").close()
        p = subprocess.Popen(["redis-server", "--dir", os.path.join(data, "redis"), "--appendonly", "yes",
                              "--appendfsync", mode, "--port", str(PORT), "--bind", "127.0.0.1",
                              "--daemonize", "no", "--save", "", "--logfile", log],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        self.write_pid(p.pid)
        for _ in range(300):
            if p.poll() is not None:
                return False
            if ping():
                return True
            time.sleep(0.1)
        return False

    def alive(self):
        return self.server_running() and ping()

    def log_summary(self, log):
        try:
            with open(log, errors="replace") as f:
                return summarize_log(f.read())
        except OSError:
            return ""
