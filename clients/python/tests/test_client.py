"""The client and its fixtures against real faultfs mounts ($FAULTFS_BIN or
faultfs in PATH; root and /dev/fuse)."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from faultfs import CommandError, ControlError, Mount
from faultfs import pytest_plugin

SOURCE = str(Path(__file__).resolve().parents[1] / "src")


def faultfs_mounts_under(prefix: str) -> list:
    with open("/proc/self/mountinfo") as f:
        fields = [line.split(" - ")[0].split() + line.split(" - ")[1].split()[:1] for line in f]
    return [f[4] for f in fields if f[-1] == "fuse.faultfs" and f[4].startswith(prefix)]


def write_and_fsync(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def test_the_readme_example(faultfs_mount: Mount) -> None:
    path = os.path.join(faultfs_mount.path, "db")
    with faultfs_mount.fault("fail writeback ENOSPC count=1") as rule:
        assert rule in faultfs_mount.rules()
        with pytest.raises(OSError) as failure:
            write_and_fsync(path, b"x" * 8192)
        assert failure.value.errno == errno.ENOSPC
    assert faultfs_mount.stats()["writeback"]["failed"] == 1
    assert rule not in faultfs_mount.rules()
    write_and_fsync(path, b"y")  # cleared: writes go through again


def test_a_refused_line_raises_the_daemons_message(faultfs_mount: Mount) -> None:
    with pytest.raises(ControlError) as refused:
        faultfs_mount.arm("fail fsync ENOTANERRNO")
    assert refused.value.errno == errno.EINVAL
    assert refused.value.message.startswith("line 1, column ")
    assert "ENOTANERRNO" in refused.value.message
    assert refused.value.lines == ["fail fsync ENOTANERRNO"]


def test_arm_is_all_or_nothing(faultfs_mount: Mount) -> None:
    with pytest.raises(ControlError) as refused:
        faultfs_mount.arm("fail fsync EIO id=first", "bogus line")
    assert refused.value.message.startswith("line 2, ")
    assert "id=first" not in faultfs_mount.rules()
    faultfs_mount.arm("fail fsync EIO id=first", "delay read 1ms id=second")
    assert "id=first" in faultfs_mount.rules() and "id=second" in faultfs_mount.rules()
    faultfs_mount.clear("first")
    assert "id=first" not in faultfs_mount.rules() and "id=second" in faultfs_mount.rules()
    faultfs_mount.clear()
    assert "id=second" not in faultfs_mount.rules()
    with pytest.raises(ControlError):
        faultfs_mount.clear("nosuchrule")


def test_fault_keeps_a_given_id_and_a_comment(faultfs_mount: Mount) -> None:
    with faultfs_mount.fault("fail fsync EIO id=mine") as rule:
        assert rule == "mine"
    with faultfs_mount.fault("fail fsync EIO  # a comment") as rule:
        assert rule.startswith("py-") and rule in faultfs_mount.rules()
    assert "fail fsync" not in faultfs_mount.rules()
    with faultfs_mount.fault("fail fsync EIO id=gone"):
        faultfs_mount.clear()  # cleared inside: the exit has nothing left to clear
    assert not faultfs_mount.is_armed("gone")


def test_status_names_the_build(faultfs_mount: Mount) -> None:
    status = faultfs_mount.status()
    assert status["mountpoint"] == faultfs_mount.path
    assert os.path.exists("/proc/%d" % status["pid"])
    printed = subprocess.run([faultfs_mount.faultfs, "--version"], stdout=subprocess.PIPE, text=True, check=True).stdout
    assert printed.strip() == "faultfs %s (commit %s)" % (status["version"], status["commit"])
    faultfs_mount.capacity("64M")
    assert faultfs_mount.status()["capacity"]["limit"] == 64 << 20
    faultfs_mount.capacity(None)
    assert faultfs_mount.status()["capacity"] == {"state": "off"}


def test_events_are_parsed(faultfs_mount: Mount) -> None:
    assert faultfs_mount.events() == []
    with faultfs_mount.fault("fail fsync EIO path=f count=1"):
        with pytest.raises(OSError):
            write_and_fsync(os.path.join(faultfs_mount.path, "f"), b"z")
    (event,) = [e for e in faultfs_mount.events() if e["action"] == "fail"]
    assert event["errno_name"] == "EIO" and event["path"] == "f" and event["pid"] == os.getpid()
    assert event["op"] in ("fsync", "fsync-only")


def test_mount_as_a_context_manager(tmp_path: Path, faultfs_bin: str) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "mnt").mkdir()
    (tmp_path / "src" / "there").write_text("before\n")
    with Mount(tmp_path / "src", tmp_path / "mnt", options=["nowriteback"], faultfs=faultfs_bin) as m:
        assert faultfs_mounts_under(str(tmp_path)) == [str(tmp_path / "mnt")]
        assert (tmp_path / "mnt" / "there").read_text() == "before\n"
        assert "nowriteback" in m.status()["options"]
    assert faultfs_mounts_under(str(tmp_path)) == []


def test_a_failed_mount_raises_the_commands_message(tmp_path: Path, faultfs_bin: str) -> None:
    with pytest.raises(CommandError) as failed:
        Mount(tmp_path / "missing", tmp_path, faultfs=faultfs_bin).mount()
    assert "missing" in failed.value.message and failed.value.returncode != 0


def test_the_fixture_unmounts_after_a_failure_and_an_interrupt(tmp_path: Path, faultfs_bin: str) -> None:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""
        import os
        def test_fails(faultfs_mount):
            open(os.path.join(faultfs_mount.path, "f"), "w").close()
            assert False, "on purpose"
        def test_interrupted(faultfs_mount):
            raise KeyboardInterrupt
        def test_never_runs(faultfs_mount):
            pass
        """))
    base = tmp_path / "base"
    env = dict(os.environ, PYTHONPATH=SOURCE, FAULTFS_BIN=faultfs_bin)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "faultfs.pytest_plugin", "-q",
                             "--basetemp", str(base), "-p", "no:cacheprovider", str(tmp_path / "test_inner.py")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(tmp_path))
    assert result.returncode == 2, result.stdout  # interrupted
    assert "1 failed" in result.stdout and "KeyboardInterrupt" in result.stdout, result.stdout
    assert faultfs_mounts_under(str(base)) == []


def test_without_root_skips_and_under_ci_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = pytest_plugin.missing_prerequisite()
    assert reason == "faultfs mounts need root (euid is 1000)"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="need root"):
        pytest_plugin.skip_or_fail(reason)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: faultfs mounts need root"):
        pytest_plugin.skip_or_fail(reason)


def has_subcommand(binary: str, name: str) -> bool:
    # (`faultfs NAME --help` for an unknown NAME is mount's help: mount is the default command.)
    shown = subprocess.run([binary, name, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return shown.returncode == 0 and ("USAGE: faultfs %s " % name) in shown.stdout


def test_crash_undoes_what_was_not_fsynced(tmp_path: Path, faultfs_bin: str) -> None:
    if not has_subcommand(faultfs_bin, "crash"):
        pytest.skip("faultfs crash is missing in this build (power-loss simulation not there yet)")
    (tmp_path / "d").mkdir()
    with Mount(tmp_path / "d", options=["crashsim"], faultfs=faultfs_bin) as m:
        write_and_fsync(os.path.join(m.path, "kept"), b"durable")
        with open(os.path.join(m.path, "lost"), "w") as f:
            f.write("not fsynced")
        report = m.crash()
        assert isinstance(report, dict)
        assert os.path.exists(os.path.join(m.path, "kept"))
        assert not os.path.exists(os.path.join(m.path, "lost"))
        assert m.status()["crashes"] == 1


def test_block_mode(tmp_path: Path, faultfs_bin: str) -> None:
    if not has_subcommand(faultfs_bin, "mount") or "--fs" not in subprocess.run(
            [faultfs_bin, "mount", "--help"], stdout=subprocess.PIPE, text=True).stdout:
        pytest.skip("faultfs mount --fs is missing in this build")
    if subprocess.run(["sh", "-c", "command -v mkfs.ext4"], stdout=subprocess.DEVNULL).returncode != 0:
        pytest.skip("mkfs.ext4 is missing (apt-get install e2fsprogs)")
    target = tmp_path / "ext4"
    target.mkdir()
    with Mount(target, fs="ext4", size="64M", faultfs=faultfs_bin) as m:
        assert faultfs_mounts_under(str(target)) == []  # an ext4 on a loop device, not FUSE
        with m.fault("fail flush EIO count=1"):
            with pytest.raises(OSError) as failure:
                write_and_fsync(os.path.join(m.path, "f"), b"x" * 4096)
            assert failure.value.errno == errno.EIO
        # The disk's cache flush reaches the image as an fsync.
        assert m.stats()["fsync"]["failed"] == 1, m.stats()
        assert [e["errno_name"] for e in m.events() if e["action"] == "fail"] == ["EIO"]
        assert m.status()["source"].endswith("/backing")
        with pytest.raises(ControlError) as refused:
            m.arm("fail write EIO offset=0-10")
        assert "offset=" in refused.value.message
    assert not os.path.ismount(str(target))


def test_pip_installs_it_offline(tmp_path: Path) -> None:
    if subprocess.run([sys.executable, "-m", "pip", "--version"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        pytest.skip("pip is missing for %s (apt-get install python3-pip)" % sys.executable)
    project = Path(__file__).resolve().parents[1]
    target = tmp_path / "site"
    # --no-index: nothing from PyPI, the in-tree backend builds the wheel.
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-cache-dir", "-q",
                                "--target", str(target), str(project)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert installed.returncode == 0, installed.stdout
    probe = ("import importlib.metadata as m, faultfs; "
             "print(faultfs.__file__); "
             "print([e.value for e in m.distribution('faultfs').entry_points if e.group == 'pytest11'])")
    shown = subprocess.run([sys.executable, "-c", probe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=dict(os.environ, PYTHONPATH=str(target)), cwd=str(tmp_path))
    assert shown.returncode == 0, shown.stdout
    assert shown.stdout.splitlines() == [str(target / "faultfs" / "__init__.py"), "['faultfs.pytest_plugin']"]
    assert (target / "faultfs" / "py.typed").exists()
