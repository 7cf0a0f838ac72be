"""LevelDB (Debian's python3-plyvel, libleveldb): a library; every put with
sync=True (the log is fsync'd before the put returns); 64 KiB memtable so
that table files (*.ldb) are written during the run. Unsafe: sync=False (a
put returns once the log record is written, not synced)."""
import os

from .base import App as Library


class Client:
    def __init__(self, a):
        import plyvel
        self.plyvel = plyvel
        self.errors = (plyvel.Error, OSError)
        self.path = os.path.join(a.data, "leveldb")
        self.sync = not getattr(a, "unsafe", False)
        self.db = None

    def open(self, create):
        # A small memtable so that table files (*.ldb) are written and
        # compacted inside the fault window.
        self.db = self.plyvel.DB(self.path, create_if_missing=create, write_buffer_size=64 << 10)

    def put(self, k, v):
        self.db.put(k.encode(), v.encode(), sync=self.sync)

    def scan(self):
        return {k.decode(errors="replace"): v for k, v in self.db.iterator()}, []

    def get(self, k):
        return self.db.get(k.encode())

    def crash(self):
        os._exit(0)


class App(Library):
    name = "leveldb"
    data_glob = "leveldb/*.ldb"
    unsafe_setting = "put(sync=False)"
    packages = ("python3-plyvel",)
    Client = Client

    def prepare(self, data, mode, out):
        os.makedirs(os.path.join(data, "leveldb"))
