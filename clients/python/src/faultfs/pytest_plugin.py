"""pytest plugin (entry point `pytest11`): the `faultfs_bin` and
`faultfs_mount` fixtures.

A mount needs root and /dev/fuse: without them the tests that use these
fixtures are skipped, saying which is missing; under CI=true they fail
instead, so a CI machine that lost its FUSE device does not pass by skipping.
The mount is always unmounted: after a failed test, and after Ctrl-C (pytest
tears fixtures down at the end of an interrupted session; an atexit hook
catches what is left)."""
from __future__ import annotations

import atexit
import os
from typing import Iterator, List, Optional

import pytest

from ._client import FaultfsError, Mount, find_faultfs

_live: List[Mount] = []


def _unmount_leftovers() -> None:
    for m in list(_live):
        try:
            m.unmount(lazy=True)
        except Exception:
            pass


atexit.register(_unmount_leftovers)


def missing_prerequisite(binary: Optional[str] = None) -> Optional[str]:
    """Why faultfs mounts cannot work here, or None."""
    if os.geteuid() != 0:
        return "faultfs mounts need root (euid is %d)" % os.geteuid()
    if not os.path.exists("/dev/fuse"):
        return "faultfs mounts need /dev/fuse (modprobe fuse)"
    try:
        find_faultfs(binary)
    except FaultfsError as error:
        return str(error)
    return None


def skip_or_fail(reason: str) -> None:
    """Skips with `reason`; under CI=true fails with it instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true: " + reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def faultfs_bin() -> str:
    """The faultfs binary ($FAULTFS_BIN, else PATH), on a machine that can mount."""
    reason = missing_prerequisite()
    if reason is not None:
        skip_or_fail(reason)
    return find_faultfs()


@pytest.fixture
def faultfs_mount(faultfs_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    """A fresh faultfs mount over an empty directory, mounted in place;
    `.path` is where to work. Unmounted after the test, whatever happened."""
    directory = tmp_path_factory.mktemp("faultfs")
    os.chmod(str(directory), 0o755)
    mount = Mount(str(directory), faultfs=faultfs_bin)
    mount.mount()
    _live.append(mount)
    try:
        yield mount
    finally:
        try:
            mount.unmount()
        finally:
            _live.remove(mount)
