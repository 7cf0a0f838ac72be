# LMDB (Debian's python3-lmdb, liblmdb): a library; sync=True, metasync=True, no writemap.
APP_MODES="default"
APP_DATA_GLOB="lmdb/data.mdb"
APP_SERVER=0
APP_PACKAGES="python3-lmdb"
app_prepare() { mkdir -p "$1/lmdb"; }
app_start() { :; }
app_alive() { return 1; }
app_kill() { :; }
app_workload_args() { :; }
app_log_summary() { :; }
