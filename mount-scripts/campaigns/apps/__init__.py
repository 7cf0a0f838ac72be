"""One module per application: its server's lifecycle (start, alive, kill,
port, data directory) and its client (the workload's put/scan/get), together.

  APPS["sqlite"] -> the App class; App(rundir) is that application for one run.
"""
from . import leveldb, lmdb, postgres, redis, sqlite

APPS = {m.App.name: m.App for m in (sqlite, postgres, redis, lmdb, leveldb)}
