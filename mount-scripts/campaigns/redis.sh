# Redis 7 (Debian's redis-server), AOF on, RDB off, 127.0.0.1:63790, data MNT/redis.
# Modes: appendfsync always (fsync before every reply) and everysec.
APP_MODES="always everysec"
APP_DATA_GLOB="redis/**"
APP_SERVER=1
APP_PACKAGES="redis-server redis-tools python3-redis"
REDIS_PORT=63790

app_prepare() { mkdir -p "$1/redis"; }

app_start() {
    local data=$1 mode=$2 log=$3
    : >"$log"
    setsid redis-server --dir "$data/redis" --appendonly yes --appendfsync "$mode" --port "$REDIS_PORT" \
        --bind 127.0.0.1 --daemonize no --save '' --logfile "$log" </dev/null >/dev/null 2>&1 &
    echo $! >"$SERVER_PIDFILE"
    for _ in $(seq 300); do
        kill -0 "$(cat "$SERVER_PIDFILE")" 2>/dev/null || return 1
        [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && return 0
        sleep 0.1
    done
    return 1
}

app_alive() {
    [[ -s $SERVER_PIDFILE ]] && kill -0 "$(cat "$SERVER_PIDFILE")" 2>/dev/null &&
        [[ $(timeout 5 redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

app_kill() {
    [[ -s $SERVER_PIDFILE ]] || return 0
    kill_tree "$(cat "$SERVER_PIDFILE")"
    rm -f "$SERVER_PIDFILE"
}

app_workload_args() { echo "--port $REDIS_PORT"; }

# The log's warnings (level '#'), deduplicated, the first few.
app_log_summary() {
    [[ -f $1 ]] || return 0
    grep ' # ' "$1" | sed 's/^[0-9]*:[A-Z] [^#]*# //' | grep -v 'overcommit\|Redis is starting\|Server initialized\|Redis version=\|Configuration loaded' |
        sort | uniq -c | sort -rn | head -3 | sed 's/^ *\([0-9]*\) \(.*\)/\2 (x\1)/' | cut -c1-140 | paste -sd ';' || true
}
