#!/usr/bin/env bash
#  bench.sh: the zcqrs benchmark in one command. Installs what is missing
#  (scripts/deps.sh, then postgresql, libpq-dev and gnuplot-nox), starts a
#  private PostgreSQL on a free loopback port for the baseline, builds
#  zcqrs-bench (RelWithDebInfo, in build-bench), runs the standard suite,
#  and writes under bench/results/:
#
#      <date>-<host>.json   every figure (zcqrs-bench's results document)
#      <date>-<host>.md     the report: headline table with the ratios to the
#                           baselines, targets, every workload, plots
#      <date>-<host>-*.png  throughput vs shards, latency vs offered load,
#                           projection lag over time (gnuplot)
#
#  A --quick run (under 2 minutes) writes <date>-<host>-quick.*, so that a
#  smoke run never overwrites the day's full run (about 20 minutes); a run
#  of chosen workloads writes <date>-<host>-<workloads>.* likewise.
#
#  The suite's `cluster` section (bash scripts/bench.sh --workload cluster)
#  starts a private ZooKeeper (scripts/zk.sh, Java and Debian's zookeeper,
#  from scripts/deps.sh) and four zcqrsd processes on loopback; all of them
#  are stopped and removed on exit, failure and Ctrl-C included.
#
#      bash scripts/bench.sh               # the full suite
#      bash scripts/bench.sh --quick       # smoke run
#      bash scripts/bench.sh --workload deposit-100k --durability wal
#      bash scripts/bench.sh --workload cluster     # one node against 3 groups
#
#  Any other option goes to zcqrs-bench (see build-bench/bench/zcqrs-bench
#  --help). BUILD_DIR overrides build-bench; BENCH_NO_PG=1 skips PostgreSQL.
#  The PostgreSQL instance lives in a temp dir and is stopped and removed on
#  exit, failure and Ctrl-C included.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
build=${BUILD_DIR:-build-bench}
quick=0
workloads=""
previous=""
for argument in "$@"; do
    [[ $argument == --quick ]] && quick=1
    [[ $previous == --workload ]] && workloads+="${workloads:+,}$argument"
    [[ $argument == --workload=* ]] && workloads+="${workloads:+,}${argument#--workload=}"
    previous=$argument
done

log() { echo "bench.sh: $*" >&2; }

#  ---------------------------------------------------------------------------
#  Packages

if [[ $(id -u) == 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null; then
    as_root=(sudo)
else
    as_root=(false)
fi

bash scripts/deps.sh
extras=(gnuplot-nox)
[[ ${BENCH_NO_PG:-0} == 1 ]] || extras+=(postgresql libpq-dev)
missing=()
for package in "${extras[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$package")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    if "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
        :
    else
        log "could not install ${missing[*]}: going on without them"
    fi
fi

#  ---------------------------------------------------------------------------
#  A private PostgreSQL, stopped on exit whatever happens

pg_dir=""
pg_bin=""
pg_user=""
conninfo=""
#  zcqrs-bench's data dirs, and the cluster section's ZooKeeper and nodes:
#  zcqrs-bench stops and removes them itself (on SIGINT and SIGTERM too, and
#  the nodes die with it); this is for when it could not (killed outright)
work_dir=$(mktemp -d /tmp/zcqrs-bench-work.XXXXXX)

cleanup() {
    local status=$?
    local zk
    for zk in "$work_dir"/zcqrs-bench-*/cluster-*/zk; do
        [[ -d $zk ]] && bash scripts/zk.sh stop "$zk" >/dev/null 2>&1 || true
    done
    rm -rf "$work_dir"
    if [[ -n $pg_dir && -d $pg_dir ]]; then
        if [[ -f $pg_dir/data/postmaster.pid ]]; then
            log "stopping PostgreSQL"
            as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
        fi
        rm -rf "$pg_dir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

#  Run a PostgreSQL program as the server's owner (initdb refuses root).
as_pg() {
    if [[ -n $pg_user ]]; then
        runuser -u "$pg_user" -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 - <<'EOF' 2>/dev/null && return 0
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
    local port
    for port in $(seq 55432 55532); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

start_postgres() {
    local version
    pg_bin=""
    for version in 15 $(ls /usr/lib/postgresql 2>/dev/null | sort -rn); do
        if [[ -x /usr/lib/postgresql/$version/bin/pg_ctl ]]; then
            pg_bin=/usr/lib/postgresql/$version/bin
            break
        fi
    done
    [[ -n $pg_bin ]] || { log "no PostgreSQL server binaries"; return 1; }
    if [[ $(id -u) == 0 ]]; then
        id postgres >/dev/null 2>&1 || { log "no postgres user"; return 1; }
        pg_user=postgres
    fi
    pg_dir=$(mktemp -d /tmp/zcqrs-bench-pg.XXXXXX)
    [[ -z $pg_user ]] || chown "$pg_user" "$pg_dir"
    chmod 700 "$pg_dir"
    local port
    port=$(free_port) || { log "no free port"; return 1; }
    as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U bench --auth=trust -E UTF8 --no-locale \
        >"$pg_dir/initdb.log" 2>&1 || { log "initdb failed: $(tail -3 "$pg_dir/initdb.log")"; return 1; }
    #  A benchmark setup, the same for both modes: WAL sized so that no
    #  checkpoint lands in a run, a large shared_buffers, minimal WAL
    #  (no replication), fsync on. synchronous_commit is set per session
    #  (on for the fsync comparison, off for wal).
    local settings="-c listen_addresses=127.0.0.1 -c port=$port"
    settings+=" -c unix_socket_directories=$pg_dir -c max_connections=300"
    settings+=" -c shared_buffers=1GB -c wal_level=minimal -c max_wal_senders=0"
    settings+=" -c max_wal_size=8GB -c checkpoint_timeout=30min -c fsync=on"
    settings+=" -c synchronous_commit=on -c wal_buffers=64MB"
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
        -o "$settings" start >/dev/null 2>&1 \
        || { log "PostgreSQL did not start: $(tail -3 "$pg_dir/server.log" 2>/dev/null)"; return 1; }
    as_pg "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U bench bench \
        || { log "createdb failed"; return 1; }
    conninfo="host=127.0.0.1 port=$port user=bench dbname=bench"
    log "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($pg_dir)"
}

if [[ ${BENCH_NO_PG:-0} != 1 ]]; then
    start_postgres || { log "the PostgreSQL baseline will be reported absent"; conninfo=""; }
fi

#  ---------------------------------------------------------------------------
#  Build

log "building zcqrs-bench in $build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZCQ_BENCH=ON >/dev/null
cmake --build "$build" --target zcqrs-bench -j"$(nproc)" >/dev/null

#  ---------------------------------------------------------------------------
#  Run

mkdir -p bench/results
name="$(date +%F)-$(hostname -s 2>/dev/null || hostname)"
[[ -z $workloads ]] || name+="-${workloads//,/+}"
((quick)) && name+="-quick"
base="bench/results/$name"
label=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || label+="+changes"

#  the plots are the matrix's, open loop's and lag's: none for the cluster alone
plots=1
[[ $workloads == cluster ]] && plots=0
args=(--json "$base.json" --md "$base.md" --label "$label" --workdir "$work_dir")
((plots)) && args+=(--plots "$base")
[[ -z $conninfo ]] || args+=(--pg "$conninfo")
log "running the suite$( ((quick)) && echo ' (quick)'): progress below, headline at the end"
headline=$("$build/bench/zcqrs-bench" "${args[@]}" "$@")

if ((!plots)); then
    :
elif command -v gnuplot >/dev/null; then
    gnuplot -e "prefix='$base'" bench/plots.gp 2>"$base-gnuplot.log" \
        && rm -f "$base-gnuplot.log" \
        || log "gnuplot failed, see $base-gnuplot.log"
else
    log "no gnuplot: the report's plots are missing"
fi

echo
echo "$headline"
echo
echo "report:  $root/$base.md"
echo "results: $root/$base.json"
ls "$base"-*.png 2>/dev/null | sed "s|^|plot:    $root/|"
