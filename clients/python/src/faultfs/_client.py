"""The client: `Mount` and its errors. Formats it reads (see the faultfs
README): `.faultfs/stats` is a header line and one line per operation of
whitespace-separated columns; `.faultfs/status` one JSON object; `.faultfs/events`
one JSON object per line; `.faultfs/control` the rules, and after a refused
write a line `# error: REASON`."""
from __future__ import annotations

import errno as errno_module
import itertools
import json
import os
import re
import shutil
import subprocess
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

_ids = itertools.count(1)


class FaultfsError(Exception):
    """Anything faultfs refused or failed to do."""


class ControlError(FaultfsError):
    """A control write the daemon refused; `message` is its own reason (the
    control file's `# error:` line, or `faultfs ctl`'s)."""

    def __init__(self, message: str, lines: Sequence[str], errno: int = errno_module.EINVAL) -> None:
        super().__init__(message)
        self.message = message
        self.lines = list(lines)
        self.errno = errno


class CommandError(FaultfsError):
    """A faultfs command that exited non-zero; `message` is what it printed."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.message = output.strip()
        super().__init__("%s exited with %d: %s" % (" ".join(self.argv), returncode, self.message))


def find_faultfs(binary: Optional[str] = None) -> str:
    """The faultfs binary: `binary`, else $FAULTFS_BIN, else `faultfs` in PATH."""
    candidate = binary or os.environ.get("FAULTFS_BIN") or shutil.which("faultfs")
    if not candidate or not os.access(candidate, os.X_OK):
        raise FaultfsError("faultfs not found (install the package, put it in PATH or set FAULTFS_BIN)")
    return os.path.abspath(candidate)


class Mount:
    """A faultfs mount of `source` at `mountpoint` (default: in place, at
    `source`). With `fs` ("ext4", "xfs", "btrfs"), block mode: `source` is
    the target that becomes that file system on a disk faultfs serves
    (`size`, `image` as `faultfs mount --fs`). `options`: `-o` options.
    As a context manager it mounts on entry and unmounts on exit."""

    def __init__(self, source: Union[str, "os.PathLike[str]"], mountpoint: Union[str, "os.PathLike[str]", None] = None,
                 *, options: Sequence[str] = (), fs: Optional[str] = None, size: Optional[str] = None,
                 image: Optional[str] = None, faultfs: Optional[str] = None, control: str = ".faultfs",
                 timeout: float = 120.0) -> None:
        self.source = os.path.abspath(os.fspath(source))
        self.path = os.path.abspath(os.fspath(mountpoint)) if mountpoint is not None else self.source
        if fs is not None and mountpoint is not None and self.path != self.source:
            raise ValueError("block mode (fs=...) mounts at its one target: give no mountpoint")
        if fs is None and (size is not None or image is not None):
            raise ValueError("size= and image= need fs=")
        self.options = list(options)
        self.fs = fs
        self.size = size
        self.image = image
        self.faultfs = find_faultfs(faultfs)
        self.control_name = control
        self.timeout = timeout
        self.mounted = False

    # Mounting.

    def mount(self) -> "Mount":
        argv = [self.faultfs, "mount"]
        if self.fs is not None:
            argv += ["--fs", self.fs]
            if self.size is not None:
                argv += ["--size", self.size]
            if self.image is not None:
                argv += ["--image", self.image]
        if self.options:
            argv += ["-o", ",".join(self.options)]
        argv += [self.source] if self.fs is not None else [self.source, self.path]
        self._run(argv)
        self.mounted = True
        return self

    def unmount(self, lazy: bool = False) -> None:
        """`faultfs umount` (lazy: `-l`, detach now). Busy: retried lazily."""
        if not self.mounted:
            return
        try:
            self._run([self.faultfs, "umount"] + (["-l"] if lazy else []) + [self.path])
        except CommandError:
            if lazy:
                raise
            self._run([self.faultfs, "umount", "-l", self.path])
        self.mounted = False

    def __enter__(self) -> "Mount":
        return self.mount()

    def __exit__(self, *exc: object) -> None:
        self.unmount()

    # Faults.

    def arm(self, *lines: str) -> None:
        """Sends control lines in one write: all are applied, or none and
        ControlError says why."""
        if not lines:
            return
        if self.fs is not None:
            # Block mode: `faultfs ctl` turns file=/region=/sectors= into rules on the image.
            result = subprocess.run([self.faultfs, "ctl", self.path] + list(lines), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, timeout=self.timeout)
            if result.returncode != 0:
                message = result.stderr.strip()
                message = re.sub(r"^faultfs: (refused: )?", "", message)
                raise ControlError(message, lines)
            return
        text = "\n".join(lines) + "\n"
        path = self.control_file("control")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as error:
            raise ControlError("%s: %s" % (path, error.strerror), lines, error.errno or 0) from None
        try:
            os.write(fd, text.encode())
        except OSError as error:
            if error.errno != errno_module.EINVAL:
                raise ControlError("%s: %s" % (path, error.strerror), lines, error.errno or 0) from None
            # The daemon keeps the reason of the last refusal in the control file.
            raise ControlError(self._last_error() or "invalid command", lines) from None
        finally:
            os.close(fd)

    def clear(self, rule_id: Optional[str] = None) -> None:
        """`clear [ID]`: every rule, or one."""
        self.arm("clear" if rule_id is None else "clear " + rule_id)

    def release(self, rule_id: Optional[str] = None) -> None:
        """`release [ID]`: lets stalled requests go on."""
        self.arm("release" if rule_id is None else "release " + rule_id)

    def capacity(self, size: Optional[str]) -> None:
        """`capacity SIZE`, or `capacity off` for None."""
        self.arm("capacity " + (size if size is not None else "off"))

    @contextmanager
    def fault(self, line: str) -> Iterator[str]:
        """Arms one rule for the `with` block and clears it at its end (a
        stall rule's held requests go on then). Yields the rule's id: its
        `id=`, or one given here."""
        rule_id = _rule_id(line)
        if rule_id is None:
            rule_id = "py-%d-%d" % (os.getpid(), next(_ids))
            code, hash_, comment = line.partition("#")
            line = code.rstrip() + " id=" + rule_id + (" " + hash_ + comment if hash_ else "")
        self.arm(line)
        try:
            yield rule_id
        finally:
            # (The block may have cleared it itself.)
            if self.mounted and self.is_armed(rule_id):
                self.clear(rule_id)

    def is_armed(self, rule_id: str) -> bool:
        """Whether the control file lists a rule with this id."""
        return re.search(r"(?:^|\s)id=%s(?:\s|$)" % re.escape(rule_id), self.rules(), re.M) is not None

    def rules(self) -> str:
        """The control file's text: the armed rules with their counters."""
        return self._read("control")

    # What the daemon says.

    def stats(self) -> Dict[str, Dict[str, int]]:
        """`.faultfs/stats`: {op: {"seen": n, "failed": n, "delayed": n, ...}}."""
        return parse_stats(self._read("stats"))

    def status(self) -> Dict[str, Any]:
        """`.faultfs/status` (pid, version, commit, capacity, ...)."""
        value = json.loads(self._read("status"))
        if not isinstance(value, dict):
            raise FaultfsError("status is not a JSON object")
        return value

    def events(self) -> List[Dict[str, Any]]:
        """`.faultfs/events`: one dict per injection so far, oldest first."""
        return [json.loads(line) for line in self._read("events").splitlines() if line.strip()]

    def crash(self, kill: bool = False, torn: bool = False, seed: Optional[int] = None,
              sector: Optional[int] = None) -> Dict[str, Any]:
        """`faultfs crash`: power loss; everything not yet durable is undone
        (the mount needs `-o crashsim`). Returns the crash report."""
        argv = [self.faultfs, "crash", self.path, "--json"]
        if kill:
            argv.append("--kill")
        if torn:
            argv.append("--torn")
        if seed is not None:
            argv += ["--seed", str(seed)]
        if sector is not None:
            argv += ["--sector", str(sector)]
        output = self._run(argv)
        try:
            report = json.loads(output)
        except ValueError:
            return {"text": output.strip()}
        return report if isinstance(report, dict) else {"report": report}

    # Helpers.

    def control_directory(self) -> str:
        """The mount's control directory; in block mode, that of the faultfs
        mount serving the image (found through `faultfs ctl TARGET`)."""
        if self.fs is None:
            return os.path.join(self.path, self.control_name)
        shown = self._run([self.faultfs, "ctl", self.path])
        match = re.search(r"served by the faultfs mount (.+)$", shown, re.M)
        if match is None:
            raise FaultfsError("%s: faultfs ctl names no faultfs mount serving the image" % self.path)
        return os.path.join(match.group(1), ".faultfs")

    def control_file(self, name: str) -> str:
        return os.path.join(self.control_directory(), name)

    def _read(self, name: str) -> str:
        with open(self.control_file(name), encoding="utf-8", errors="replace") as f:
            return f.read()

    def _last_error(self) -> Optional[str]:
        errors = [line for line in self._read("control").splitlines() if line.startswith("# error: ")]
        return errors[-1][len("# error: "):] if errors else None

    def _run(self, argv: List[str]) -> str:
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=self.timeout)
        if result.returncode != 0:
            raise CommandError(argv, result.returncode, re.sub(r"^faultfs: ", "", result.stdout.strip()))
        return result.stdout

    def __repr__(self) -> str:
        return "Mount(%r, %r%s)" % (self.source, self.path, ", fs=%r" % self.fs if self.fs else "")


def _rule_id(line: str) -> Optional[str]:
    match = re.search(r"(?:^|\s)id=(\S+)", line.partition("#")[0])
    return match.group(1) if match else None


def parse_stats(text: str) -> Dict[str, Dict[str, int]]:
    """The stats file: a header line naming the columns ("op seen failed
    ...") and one line per operation."""
    lines = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines or lines[0][0] != "op":
        raise FaultfsError("stats: no header line")
    header = lines[0][1:]
    out: Dict[str, Dict[str, int]] = {}
    for cells in lines[1:]:
        if len(cells) != len(header) + 1:
            raise FaultfsError("stats: %d columns in %r, the header has %d" % (len(cells), " ".join(cells), len(header) + 1))
        out[cells[0]] = {name: int(value) for name, value in zip(header, cells[1:])}
    return out
