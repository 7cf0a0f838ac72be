"""The Debian package, end to end on this machine (root): mount-scripts/package
builds it, `apt-get install ./dist/...deb` installs it, the installed faultfs
runs without the Swift toolchain, its man pages render, `mount -t
fuse.faultfs` and an fstab line mount it, `faultfs demo` runs, and `apt-get
purge` leaves the machine as it was. One test: the steps depend on each
other, and the package is built once (minutes)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
# What a machine without Swift has: no toolchain directory in PATH.
PLAIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
INSTALLED = ["/usr/bin/faultfs", "/usr/share/man/man1/faultfs.1.gz", "/usr/share/man/man5/faultfs-control.5.gz",
             "/usr/share/bash-completion/completions/faultfs", "/usr/share/zsh/vendor-completions/_faultfs",
             "/usr/share/fish/vendor_completions.d/faultfs.fish", "/usr/share/doc/faultfs/copyright"]


def run(argv: List[str], timeout: float = 600, env: Optional[Dict[str, str]] = None, check: bool = True,
        **kwargs: Any) -> str:
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                            env=env, **kwargs)
    if check:
        assert result.returncode == 0, "%s exited with %d:\n%s" % (" ".join(argv), result.returncode, result.stdout)
    return result.stdout


def plain_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    env["PATH"] = PLAIN_PATH
    return env


def installed_packages() -> str:
    return run(["dpkg-query", "-W", "-f", "${Package} ${Version} ${Status}\n"])


def faultfs_mounts_under(prefix: str) -> List[str]:
    with open("/proc/self/mountinfo") as f:
        rows = [(line.split()[4], line.split(" - ")[1].split()[0]) for line in f]
    return [m for m, fstype in rows if fstype == "fuse.faultfs" and m.startswith(prefix)]


@pytest.fixture
def machine() -> Dict[str, str]:
    if os.geteuid() != 0:
        pytest.skip("installing a package needs root")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("not a Debian machine (no apt-get or dpkg-deb)")
    if run(["dpkg-query", "-W", "-f", "${Status}", "faultfs"], check=False).startswith("install ok"):
        pytest.skip("a faultfs package is installed here already; the test would remove it")
    present = [p for p in INSTALLED if os.path.lexists(p)]
    if present:
        pytest.skip("%s exist(s) already; the test would remove them" % ", ".join(present))
    return {"packages": installed_packages()}


def test_package_installs_works_and_purges(machine: Dict[str, str]) -> None:
    started = time.monotonic()
    built = run(["bash", str(REPO / "mount-scripts/package")], timeout=1800, cwd=str(REPO))
    deb = REPO / built.strip().splitlines()[-1]
    print("package built in %.0f s: %s, %d bytes" % (time.monotonic() - started, deb, deb.stat().st_size))
    lintian = [line for line in built.splitlines() if line[:3] in ("E: ", "W: ", "I: ", "N: ")]
    print("lintian:\n" + "\n".join(lintian))
    assert not [line for line in lintian if line.startswith("E: ")], "lintian errors:\n" + built
    fields = run(["dpkg-deb", "-f", str(deb), "Version", "Depends"])
    version = fields.splitlines()[0].split(": ", 1)[1]
    assert "fuse3" in fields and "libfuse3-3" in fields

    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "-y", "install", "./" + str(deb.relative_to(REPO))],
            env=env, cwd=str(REPO))
        env = plain_env()
        assert shutil.which("swift", path=PLAIN_PATH) is None, "the test needs a PATH without Swift"
        shown = run(["faultfs", "--version"], env=env)
        assert shown.startswith("faultfs %s (commit " % version), shown
        assert "libswift" not in run(["ldd", "/usr/bin/faultfs"])
        for page, words in (("/usr/share/man/man1/faultfs.1.gz", "faultfs"),
                            ("/usr/share/man/man5/faultfs-control.5.gz", "control language")):
            # (Without a terminal man overstrikes for bold: "N\bNA\bA...".)
            text = re.sub(".\b", "", run(["man", "-l", page], env=dict(env, MANWIDTH="80")))
            assert words in text and "NAME" in text, text[:500]
        completion = run(["bash", "-c", "source /usr/share/bash-completion/completions/faultfs && complete -p faultfs"],
                         env=env)
        assert "faultfs" in completion

        with tempfile.TemporaryDirectory(prefix="faultfs-package-test.") as tmp:
            src, mnt = os.path.join(tmp, "src"), os.path.join(tmp, "mnt")
            os.mkdir(src)
            os.mkdir(mnt)
            Path(src, "there").write_text("before\n")
            # mount(8) -> mount.fuse3 -> `faultfs SRC MNT -o ...` found in PATH.
            run(["mount", "-t", "fuse.faultfs", "-o", "nowriteback", src, mnt], env=env, timeout=60)
            try:
                assert faultfs_mounts_under(tmp) == [mnt]
                assert Path(mnt, "there").read_text() == "before\n"
                assert ('"version":"%s"' % version) in Path(mnt, ".faultfs/status").read_text()
            finally:
                run(["umount", mnt], env=env, timeout=60)
            assert faultfs_mounts_under(tmp) == []
            # An fstab line (an fstab of the test's own, not /etc/fstab).
            fstab = os.path.join(tmp, "fstab")
            Path(fstab).write_text("%s %s fuse.faultfs defaults,nofail,noatime 0 0\n" % (src, mnt))
            run(["mount", "--fstab", fstab, mnt], env=env, timeout=60)
            try:
                assert faultfs_mounts_under(tmp) == [mnt]
            finally:
                run(["faultfs", "umount", mnt], env=env, timeout=60)
            assert faultfs_mounts_under(tmp) == []
            # The demo needs nothing from the source tree.
            demo = run(["faultfs", "demo", "--out", os.path.join(tmp, "demo")], env=env, timeout=300, cwd=tmp)
            assert "report: " in demo, demo
            # The run folder and the report name the build.
            settings = Path(tmp, "demo", "events.jsonl").read_text()
            assert '"key":"faultfs.version","value":"%s"' % version in settings
            assert "faultfs.commit" in Path(tmp, "demo", "report.html").read_text()
    finally:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        purge = subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "-y", "purge", "faultfs"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=600)
    assert purge.returncode == 0, purge.stdout
    assert [p for p in INSTALLED if os.path.lexists(p)] == []
    assert installed_packages() == machine["packages"]
    print("package test took %.0f s" % (time.monotonic() - started))
