# Shared by mount-scripts/campaign and the per-application files beside this
# one (sourced, not run). Each application file defines:
#   APP_MODES          the modes to run (e.g. "rollback wal")
#   APP_DATA_GLOB      path= glob of the application's main data files (relative to the mount)
#   APP_SERVER         1 when the application is a server the campaign starts
#   APP_PACKAGES       Debian packages it needs
#   app_prepare DATA MODE        create the empty database on the (unmounted) directory
#   app_start DATA MODE LOG      start the server (no-op for a library); fail when it does not come up
#   app_alive                    0 when the server is still up
#   app_kill                     SIGKILL the server and its children (by pid), wait for them
#   app_workload_args MODE       extra arguments for workload.py
#   app_log_summary LOG          one line: what the server's log says (errors, PANIC, ...)
#   app_tamper DATA ACKS         (optional) the seeded-loss self-test: change data behind the app's back

CAMPAIGN_PY=/usr/bin/python3     # Debian's: python3-lmdb, -plyvel, -psycopg2, -redis live there
SERVER_PIDFILE=""                # set per run: where app_start writes the server's pid

log() { printf '[campaign %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Kill a pid and its descendants (by pid, children first found from /proc), then wait.
kill_tree() {
    local pid=$1 kids k
    [[ -n $pid ]] || return 0
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
    kill -9 "$pid" 2>/dev/null || true
    for k in $kids; do kill_tree "$k"; done
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

# Mounts of ours still in the mount table: faultfs mounts below $1.
our_mounts() {
    awk -v p="$1" '$3 == "fuse.faultfs" && index($2, p) == 1 { print $2 }' /proc/mounts
}

# The fault plans live in plans.py (their lines, descriptions, how they are
# applied and ended, and whether they fired).
plan_lines() { "$CAMPAIGN_PY" "$HERE/plans.py" lines "$1" "$2"; }
plan_describe() { "$CAMPAIGN_PY" "$HERE/plans.py" describe "$1"; }
