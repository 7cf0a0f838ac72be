# SQLite (Debian's libsqlite3 through python3's sqlite3 module): a library,
# no server. Rollback journal (journal_mode=DELETE) and WAL, synchronous=FULL.
APP_MODES="rollback wal"
APP_DATA_GLOB="sqlite/test.db"
APP_SERVER=0
APP_PACKAGES="sqlite3 python3"

app_prepare() { mkdir -p "$1/sqlite"; }
app_start() { :; }
app_alive() { return 1; }
app_kill() { :; }
app_workload_args() { :; }
app_log_summary() { :; }

# Self-test: behind SQLite's back (with the sqlite3 CLI on the mounted copy,
# after the crash), delete the first acknowledged key and set the second one
# back to its first acknowledged value (or delete it when it has only one).
app_tamper() {
    local data=$1 acks=$2 k1 k2 old2
    read -r k1 k2 old2 < <("$CAMPAIGN_PY" - "$acks" <<'EOF'
import json, sys
h = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["ok"]:
        h.setdefault(r["key"], []).append(r["value"])
keys = sorted(h)
k1 = keys[0]
multi = [k for k in keys[1:] if len(h[k]) > 1]
k2 = multi[0] if multi else keys[1]
print(k1, k2, h[k2][0] if multi else "-")
EOF
)
    sqlite3 "$data/sqlite/test.db" "DELETE FROM kv WHERE k='$k1';" \
        "$( [[ $old2 == - ]] && echo "DELETE FROM kv WHERE k='$k2';" || echo "UPDATE kv SET v='$old2' WHERE k='$k2';")"
    echo "tampered: deleted $k1; $( [[ $old2 == - ]] && echo "deleted $k2" || echo "set $k2 to its first acknowledged value")"
}
