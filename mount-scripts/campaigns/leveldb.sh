# LevelDB (Debian's python3-plyvel, libleveldb): a library; every put with
# sync=True (the log is fsync'd before the put returns); 64 KiB memtable so
# that table files (*.ldb) are written during the run.
APP_MODES="default"
APP_DATA_GLOB="leveldb/*.ldb"
APP_SERVER=0
APP_PACKAGES="python3-plyvel"
app_prepare() { mkdir -p "$1/leveldb"; }
app_start() { :; }
app_alive() { return 1; }
app_kill() { :; }
app_workload_args() { :; }
app_log_summary() { :; }
