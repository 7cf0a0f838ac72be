"""What every application module builds on: an embedded library by default
(no server), and the process handling of a server (its pid file in the run
folder, killing its whole tree)."""
import os, signal, time


def short(e):
    """An exception in one line of at most 200 characters."""
    s = ("%s: %s" % (type(e).__name__, e)).strip().replace("\n", " ")
    return s[:200]


class App:
    """An embedded database (a library in the workload's process): nothing to
    start or kill; the workload's crash (os._exit) is the application's."""
    name = ""
    modes = ("default",)
    data_glob = ""      # the path= glob of the main data files (relative to the mount)
    disk_glob = None    # block mode's file= glob (glob(3): no **), when data_glob will not do
    packages = ()       # Debian packages it needs
    server = False
    port = 0
    checkpoint_every = 0  # the workload runs a CHECKPOINT every N operations (0: never)
    # The unsafe configuration (campaign --unsafe): what it turns off, and its
    # modes (default: the same as the safe ones).
    unsafe_setting = ""
    unsafe_modes = None

    def __init__(self, rundir, unsafe=False):
        self.rundir = rundir
        self.unsafe = unsafe
        self.pidfile = os.path.join(rundir, "server.pid")

    @classmethod
    def modes_for(cls, unsafe):
        return (cls.unsafe_modes or cls.modes) if unsafe else cls.modes

    def prepare(self, data, mode, out):
        """Create the empty database on the (unmounted) data directory."""

    def start(self, data, mode, log):
        """Start the server on the mounted data directory; False when it does not come up."""
        return True

    def alive(self):
        return False

    def kill(self):
        """SIGKILL the server and its children, wait for them (no-op without a server)."""
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return
        kill_tree(pid)
        os.unlink(self.pidfile)

    def log_summary(self, log):
        """One line: what the server's log says (errors, PANIC, ...)."""
        return ""

    def write_pid(self, pid):
        with open(self.pidfile, "w") as f:
            f.write("%d\n" % pid)

    def server_pid(self):
        try:
            with open(self.pidfile) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def server_running(self):
        pid = self.server_pid()
        return pid is not None and is_running(pid)

    # tamper(data, acks) -> str: the seeded-loss self-test, where an application has one.
    tamper = None


def is_running(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid):
    out = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % p) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p))
        except (OSError, ValueError, IndexError):
            pass
    return out


def is_gone(pid):
    """True once pid no longer exists, not even as a zombie: PostgreSQL's
    restart refuses a data directory whose postmaster pid still answers kill 0."""
    try:
        os.waitpid(pid, os.WNOHANG)   # reaps it when it is our own child
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def kill_tree(pid):
    """SIGKILL pid and its descendants (found before the kill), then wait up to 5 s for pid to be gone."""
    kids = children(pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for k in kids:
        kill_tree(k)
    for _ in range(50):
        if is_gone(pid):
            return
        time.sleep(0.1)
