# PostgreSQL 15 (Debian's postgresql): our own cluster, as user postgres, on
# 127.0.0.1:54329 (socket in /tmp), data directory MNT/pgdata.
# Modes: default settings (data_sync_retry=off: PANIC when an fsync fails),
# and data_sync_retry=on (report the failed fsync, retry at the next checkpoint).
APP_MODES="default retry"
APP_DATA_GLOB="pgdata/base/**"
APP_SERVER=1
APP_PACKAGES="postgresql python3-psycopg2"
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=54329

app_prepare() {
    local data=$1 mode=$2 tpl="$OUT/.template-postgres"
    if [[ ! -f $tpl/.complete ]]; then
        rm -rf "$tpl"; mkdir -p "$tpl"; chown postgres: "$tpl"; chmod 700 "$tpl"
        : >"$OUT/.template-postgres.log"; chown postgres: "$OUT/.template-postgres.log"
        runuser -u postgres -- "$PG_BIN/initdb" -D "$tpl" -A trust -U postgres >/dev/null
        cat >>"$tpl/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '/tmp'
CONF
        # The table exists (and is checkpointed) before any run: the first
        # data-file writeback in the fault window is then the table's, not a catalog's.
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$tpl" -l "$OUT/.template-postgres.log" -w start >/dev/null
        runuser -u postgres -- psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
            -c "CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL)" -c CHECKPOINT
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$tpl" -w stop >/dev/null
        touch "$tpl/.complete"
    fi
    cp -a "$tpl" "$data/pgdata"
    rm -f "$data/pgdata/.complete"
    if [[ $mode == retry ]]; then echo "data_sync_retry = on" >>"$data/pgdata/postgresql.conf"; fi
}

app_start() {
    local data=$1 log=$3
    : >"$log"; chown postgres: "$log"
    if ! runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data/pgdata" -l "$log" -w -t 90 start >/dev/null 2>&1; then
        [[ -f $data/pgdata/postmaster.pid ]] && head -1 "$data/pgdata/postmaster.pid" >"$SERVER_PIDFILE"
        return 1
    fi
    head -1 "$data/pgdata/postmaster.pid" >"$SERVER_PIDFILE"
}

app_alive() {
    [[ -s $SERVER_PIDFILE ]] && kill -0 "$(cat "$SERVER_PIDFILE")" 2>/dev/null &&
        "$PG_BIN/pg_isready" -q -U postgres -d postgres -h 127.0.0.1 -p "$PG_PORT" -t 5
}

app_kill() {
    [[ -s $SERVER_PIDFILE ]] || return 0
    kill_tree "$(cat "$SERVER_PIDFILE")"
    rm -f "$SERVER_PIDFILE"
}

app_workload_args() { echo "--port $PG_PORT --checkpoint-every 40"; }

app_log_summary() {
    local log=$1 out=()
    [[ -f $log ]] || return 0
    local n
    n=$(grep -c 'PANIC:' "$log" || true)
    ((n)) && out+=("PANIC x$n ($(grep -m1 'PANIC:' "$log" | sed 's/.*PANIC: *//' | cut -c1-100))")
    n=$(grep -c '  ERROR:\| ERROR: ' "$log" || true)
    ((n)) && out+=("ERROR x$n ($(grep -m1 ' ERROR: ' "$log" | sed 's/.*ERROR: *//' | cut -c1-100))")
    n=$(grep -c 'WARNING: ' "$log" || true)
    ((n)) && out+=("WARNING x$n ($(grep -m1 'WARNING: ' "$log" | sed 's/.*WARNING: *//' | cut -c1-100))")
    grep -q 'terminated by signal' "$log" && out+=("a server process was killed ($(grep -m1 'terminated by signal' "$log" | sed 's/.*LOG: *//' | cut -c1-80))")
    grep -q 'reinitializing' "$log" && out+=("postmaster restarted the server (crash recovery)")
    grep -q 'redo done' "$log" && out+=("recovery replayed WAL ($(grep -m1 'redo done' "$log" | sed 's/.*LOG: *//' | cut -c1-60))")
    grep -q 'FATAL: ' "$log" && out+=("FATAL: $(grep -m1 'FATAL: ' "$log" | sed 's/.*FATAL: *//' | cut -c1-100)")
    local IFS=';'
    echo "${out[*]}"
}
