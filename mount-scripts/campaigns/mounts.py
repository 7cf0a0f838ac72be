"""A faultfs mount seen from a script: its control file, its status, the mount table.

  control(mnt, *lines)      write lines to MNT/.faultfs/control (its write error is the refusal)
  status(mnt)               MNT/.faultfs/status as a dict (None when this daemon has none)
  daemon_pid(mnt), capacity_used(mnt)
  faultfs_mounts_below(prefix)   faultfs mount points under prefix (from /proc/self/mountinfo)
  block_targets_below(prefix)    ext4/XFS/Btrfs mount points under prefix (block-mode targets)

Used by the campaign driver and the benchmark (mount-scripts/bench.d).
`python3 mounts.py daemon-pid MNT` prints the daemon's pid (for bash).
"""
import json, os, re, sys, time


class ControlRefused(RuntimeError):
    pass


def control_path(mnt, name="control"):
    return os.path.join(mnt, ".faultfs", name)


def control(mnt, *lines):
    """Writes the lines in one write(); the daemon refuses a bad line with an errno."""
    text = "".join(line + "\n" for line in lines).encode()
    try:
        fd = os.open(control_path(mnt), os.O_WRONLY)
        try:
            os.write(fd, text)
        finally:
            os.close(fd)
    except OSError as e:
        raise ControlRefused("%s refused %r: %s" % (control_path(mnt), " / ".join(lines), e.strerror)) from e


def read_control(mnt):
    with open(control_path(mnt)) as f:
        return f.read()


def status(mnt):
    """The daemon's .faultfs/status as a dict (pid, mountpoint, source, options,
    writeback_cache, armed_rules, capacity): see the README, "The status file"."""
    with open(control_path(mnt, "status")) as f:
        return json.loads(f.read())


def daemon_pid(mnt):
    return int(status(mnt)["pid"])


def capacity_used(mnt, timeout=120.0):
    """The capacity model's used bytes (None when the model is off); waits
    while the daemon is still measuring the backing tree."""
    deadline = time.monotonic() + timeout
    while True:
        cap = status(mnt).get("capacity", {})
        if cap.get("state") == "ready":
            return int(cap["used"])
        if cap.get("state") != "measuring" or time.monotonic() > deadline:
            return None
        time.sleep(0.1)


# ---------------------------------------------------------------- the mount table

def unescape_mountinfo(field):
    """Mountinfo writes space, tab, newline and backslash as \\040 \\011 \\012 \\134."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text):
    """[(mount point, fs type), ...] from /proc/self/mountinfo's text (pure)."""
    out = []
    for line in text.splitlines():
        fields = line.split(" ")
        if " - " not in line or len(fields) < 10:
            continue
        after = fields[fields.index("-") + 1:]
        out.append((unescape_mountinfo(fields[4]), after[0]))
    return out


BLOCK_FS_TYPES = ("ext4", "xfs", "btrfs")


def block_targets_below(prefix):
    """Block-mode targets (ext4, XFS, Btrfs mounts) at or below prefix, deepest first."""
    with open("/proc/self/mountinfo") as f:
        table = parse_mountinfo(f.read())
    prefix = prefix.rstrip("/")
    hits = [m for m, fstype in table
            if fstype in BLOCK_FS_TYPES and (m == prefix or m.startswith(prefix + "/"))]
    return sorted(set(hits), key=len, reverse=True)


def faultfs_mounts_below(prefix):
    """faultfs mount points at or below prefix, deepest first (the order to unmount them)."""
    with open("/proc/self/mountinfo") as f:
        table = parse_mountinfo(f.read())
    prefix = prefix.rstrip("/")
    hits = [m for m, fstype in table
            if fstype == "fuse.faultfs" and (m == prefix or m.startswith(prefix + "/"))]
    return sorted(set(hits), key=len, reverse=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "daemon-pid":
        pid = daemon_pid(sys.argv[2])
        if pid is None:
            sys.exit(1)
        print(pid)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
