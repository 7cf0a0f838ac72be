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

# Apply control lines to a mount (all together, or none).
ctl() { "$FAULTFS" ctl "$@"; }

# Print the control lines of fault plan $1 for a mount whose data glob is $2.
# (capacity is computed at injection time, see inject_plan.)
plan_lines() {
    case $1 in
        baseline|selftest-seeded) ;;
        wb-eio) echo "fail writeback EIO count=1" ;;
        wb-enospc) echo "fail writeback ENOSPC count=1" ;;
        wb-eio-data) echo "fail writeback EIO count=1 path=$2" ;;
        fsync-eio) echo "fail fsync,fdatasync EIO count=1" ;;
        flush-eio) echo "fail flush EIO" ;;
        capacity) echo "capacity USED+16K" ;;
        stall) echo "stall writeback" ;;
        selftest-drop) echo "drop writeback path=$2" ;;
        custom:*) echo "${1#custom:}" ;;
        *) echo "campaign: unknown plan $1" >&2; return 2 ;;
    esac
}

plan_describe() {
    case $1 in
        baseline) echo "no fault (control run)" ;;
        wb-eio) echo "the next writeback fails with EIO, once" ;;
        wb-enospc) echo "the next writeback fails with ENOSPC, once" ;;
        wb-eio-data) echo "the next writeback of the main data files fails with EIO, once" ;;
        fsync-eio) echo "the next fsync/fdatasync reply is EIO, once (after the data was written)" ;;
        flush-eio) echo "every close() (FLUSH) fails with EIO during the fault window" ;;
        capacity) echo "the disk fills up (16 KiB left when the fault starts) during the fault window" ;;
        stall) echo "writeback stalls for 3 s, then is released" ;;
        selftest-drop) echo "SELF-TEST: writebacks of the data files are acknowledged and dropped (a silent loss the checker must catch)" ;;
        selftest-seeded) echo "SELF-TEST: no fault; one key deleted and one set back to an older value behind the app's back" ;;
        custom:*) echo "${1#custom:}" ;;
    esac
}

# Apply plan $2 to mount $1 (data glob $3). Called by the workload at the switch point.
inject_plan() {
    local mnt=$1 plan=$2 glob=$3 line used
    line=$(plan_lines "$plan" "$glob")
    [[ -n $line ]] || return 0
    if [[ $line == "capacity USED+16K" ]]; then
        ctl "$mnt" "capacity 1024G" >/dev/null
        used=$(ctl "$mnt" | sed -n 's/^# capacity [0-9]* bytes, used \([0-9]*\) bytes.*/\1/p')
        [[ -n $used ]] || { echo "campaign: cannot read the capacity model's used bytes" >&2; return 1; }
        line="capacity $((used + 16384))"
    fi
    echo "$line" >"$RUNDIR/fault-applied.txt"
    local lines=()
    mapfile -t lines <<<"$line"
    ctl "$mnt" "${lines[@]}"
}

end_plan() { ctl "$1" clear "capacity off" release; }
