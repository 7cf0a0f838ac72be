"""Drive faultfs mounts from Python: mount and unmount through the faultfs
CLI, arm and clear faults through the control file, read the stats, status
and events files parsed, simulate a crash. Standard library only.

    from faultfs import Mount
    with Mount("/srv/db") as m:
        with m.fault("fail writeback ENOSPC count=1"):
            ...
        assert m.stats()["writeback"]["failed"] == 1
"""
from __future__ import annotations

from ._client import CommandError, ControlError, FaultfsError, Mount, find_faultfs

__all__ = ["Mount", "FaultfsError", "ControlError", "CommandError", "find_faultfs"]
