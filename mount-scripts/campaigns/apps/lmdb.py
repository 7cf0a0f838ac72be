"""LMDB (Debian's python3-lmdb, liblmdb): a library; sync=True, metasync=True, no writemap.
Unsafe: sync=False (MDB_NOSYNC: a commit does not flush)."""
import os

from .base import App as Library


class Client:
    def __init__(self, a):
        import lmdb
        self.lmdb = lmdb
        self.errors = (lmdb.Error, OSError)
        self.path = os.path.join(a.data, "lmdb")
        self.sync = not getattr(a, "unsafe", False)
        self.env = None

    def open(self, create):
        if create:
            os.makedirs(self.path, exist_ok=True)
        # Defaults: sync=True (fdatasync at every commit), no writemap.
        self.env = self.lmdb.open(self.path, map_size=64 << 20, sync=self.sync, metasync=self.sync)

    def put(self, k, v):
        with self.env.begin(write=True) as txn:
            txn.put(k.encode(), v.encode())

    def scan(self):
        with self.env.begin() as txn:
            return {bytes(k).decode(errors="replace"): bytes(v) for k, v in txn.cursor()}, []

    def get(self, k):
        with self.env.begin() as txn:
            return txn.get(k.encode())

    def crash(self):
        os._exit(0)


class App(Library):
    name = "lmdb"
    data_glob = "lmdb/data.mdb"
    unsafe_setting = "MDB_NOSYNC (sync=False)"
    packages = ("python3-lmdb",)
    Client = Client

    def prepare(self, data, mode, out):
        os.makedirs(os.path.join(data, "lmdb"))
