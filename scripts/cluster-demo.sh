#!/usr/bin/env bash
#  cluster-demo.sh: a zcqrs cluster on one machine. Builds zcqrs, starts a
#  ZooKeeper ensemble of three, makes three "machines" (network namespaces
#  joined by a bridge, addressed from 198.18.0.0/15), creates a cluster of
#  three groups with one zcqrsd per machine, drives bank load from Python
#  (zcqrs.ClusterClient: each command straight to its group's leader), kills
#  one node with SIGKILL (its group's commands are refused with a reason, the
#  others keep committing), restarts it (its group serves again, nothing
#  acknowledged is lost), and checks that every acknowledged command is in
#  its group's log exactly once and that the bank's totals add up.
#
#      bash scripts/cluster-demo.sh              # build in ./build
#      BUILD_DIR=build-x bash scripts/cluster-demo.sh
#      ZCQ_DEMO_LOOPBACK=1 bash scripts/cluster-demo.sh    # no namespaces
#      ZCQ_DEMO_PREBUILT=1 ...                   # skip deps.sh and the build
#                                                # (ctest `cluster_demo`)
#
#  Where it runs: as root with `ip`, ZooKeeper and the clients (the CLI and
#  the Python load) live in a fourth namespace, "ops" (198.18.0.100), on
#  the same bridge as the machines (198.18.0.1-3); the bridge has no
#  address, so every packet of the demo stays inside namespaces it made,
#  and the host's network is not touched. Without root or `ip` (or with
#  ZCQ_DEMO_LOOPBACK=1) everything runs on 127.0.0.1 ports instead, and the
#  script says so. Everything it made is removed on exit, Ctrl-C included.
#  Exits non-zero when a check fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${BUILD_DIR:-build}
python=/usr/bin/python3

if [[ -z ${ZCQ_DEMO_PREBUILT:-} ]]; then
    bash scripts/deps.sh
    echo "==> building zcqrsd, zcqrs and the Python package in $build"
    cmake -S . -B "$build" --no-warn-unused-cli \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPython3_EXECUTABLE=$python >/dev/null
    cmake --build "$build" -j"$(nproc)" \
        --target zcqrsd zcqrs_cli zcqrs_bank_plugin zcqrs_python >/dev/null
fi
build=$(cd "$build" && pwd)

#  --------------------------------------------------------------------------
#  What the demo makes, and how it is all removed

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zcqrs-cluster-demo.XXXXXX")
tag=zcq$$                   # names of this run's namespaces and links
namespaces=()
bridge=
declare -A node_pid=()
zk_started=
step_pid=

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local machine pid
    [[ -n $step_pid ]] && kill -KILL "$step_pid" 2>/dev/null || true
    for machine in "${!node_pid[@]}"; do
        pid=${node_pid[$machine]}
        [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
    done
    for machine in "${!node_pid[@]}"; do
        pid=${node_pid[$machine]}
        [[ -n $pid ]] && wait "$pid" 2>/dev/null || true
    done
    [[ -n $zk_started ]] && bash scripts/zk.sh stop "$tmp/zk" >/dev/null 2>&1 || true
    local ns
    for ns in "${namespaces[@]}"; do
        #  anything still in there was started by this script
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    [[ -n $bridge ]] && ip link del "$bridge" 2>/dev/null || true
    rm -rf "$tmp"
    if ((${#namespaces[@]})); then
        echo "==> removed namespaces ${namespaces[*]}, bridge $bridge, processes and $tmp"
    else
        echo "==> stopped every process and removed $tmp"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'echo; echo "cluster-demo: interrupted"; exit 130' INT TERM

#  step COMMAND...: run a command that takes a while in the background and
#  wait for it. A foreground child that catches SIGINT itself (Python does)
#  would keep bash from running its trap on Ctrl-C; `wait` is interrupted
#  at once, and cleanup kills the step.
step() {
    "$@" &
    step_pid=$!
    local status=0
    wait "$step_pid" || status=$?
    step_pid=
    return "$status"
}

unexpected=0
fail() {
    echo "cluster-demo: UNEXPECTED: $*" >&2
    unexpected=$((unexpected + 1))
}

#  --------------------------------------------------------------------------
#  Machines: network namespaces on a bridge, or loopback ports

machines=(m1 m2 m3)
declare -A address=() run_prefix=()
mode=loopback
why=
if [[ -n ${ZCQ_DEMO_LOOPBACK:-} ]]; then
    why="ZCQ_DEMO_LOOPBACK is set"
elif [[ $(id -u) != 0 ]]; then
    why="not root: network namespaces need it"
elif ! command -v ip >/dev/null; then
    why="no \`ip\` (iproute2)"
else
    mode=netns
fi

#  on NAME: run the rest of the line in machine NAME (or "ops")
on() {
    local where=$1
    shift
    if [[ $mode == netns ]]; then
        ip netns exec "$tag-$where" "$@"
    else
        "$@"
    fi
}

make_namespaces() {
    ip link add "$bridge" type bridge || return 1
    ip link set "$bridge" up || return 1
    local index=0 where
    for where in "${machines[@]}" ops; do
        index=$((index + 1))
        local ns=$tag-$where host_end=${tag}h$index ns_end=${tag}n$index
        ip netns add "$ns" || return 1
        namespaces+=("$ns")
        ip link add "$host_end" type veth peer name "$ns_end" || return 1
        ip link set "$host_end" master "$bridge" up || return 1
        ip link set "$ns_end" netns "$ns" || return 1
        ip -n "$ns" addr add "${address[$where]}/24" dev "$ns_end" || return 1
        ip -n "$ns" link set "$ns_end" up || return 1
        ip -n "$ns" link set lo up || return 1
    done
}

if [[ $mode == netns ]]; then
    address=([m1]=198.18.0.1 [m2]=198.18.0.2 [m3]=198.18.0.3 [ops]=198.18.0.100)
    bridge=${tag}br
    echo "==> three machines as network namespaces on bridge $bridge (198.18.0.0/24, no host address)"
    if ! make_namespaces 2>"$tmp/ip.err"; then
        why="could not make namespaces: $(head -n 1 "$tmp/ip.err")"
        for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
        [[ -n $bridge ]] && ip link del "$bridge" 2>/dev/null || true
        namespaces=()
        bridge=
        mode=loopback
    fi
fi
if [[ $mode == loopback ]]; then
    echo "==> NOTE: no network namespaces ($why): the three machines are ports on 127.0.0.1"
    address=([m1]=127.0.0.1 [m2]=127.0.0.1 [m3]=127.0.0.1 [ops]=127.0.0.1)
    #  free ports: three per node, and a block for ZooKeeper's numbering
    read -r -a free <<<"$($python - <<'EOF'
import socket
def free_block(count, spread=(0,)):
    for _ in range(500):
        s = socket.socket(); s.bind(("127.0.0.1", 0)); base = s.getsockname()[1]; s.close()
        if base > 60000:
            continue
        try:
            held = []
            for offset in spread:
                for i in range(count):
                    h = socket.socket(); h.bind(("127.0.0.1", base + offset + i)); held.append(h)
            for h in held: h.close()
            return base
        except OSError:
            for h in held: h.close()
    raise SystemExit("no free ports")
print(free_block(3, (0, 101, 201)), *[free_block(3) for _ in range(3)])
EOF
)"
    zk_port=${free[0]}
    declare -A base_port=([m1]=${free[1]} [m2]=${free[2]} [m3]=${free[3]})
else
    zk_port=2181
    declare -A base_port=([m1]=7400 [m2]=7400 [m3]=7400)
fi
for where in "${machines[@]}"; do
    echo "    ${where}: ${address[$where]}"
done
echo "    ops (ZooKeeper, the CLI, the Python load): ${address[ops]}"

#  reach WHERE HOST PORT: whether a TCP connection from WHERE gets through
reach() {
    on "$1" $python -c 'import signal, socket, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()' "$2" "$3" 2>/dev/null
}

#  --------------------------------------------------------------------------
#  ZooKeeper: an ensemble of three, in ops

echo
echo "==> ZooKeeper: an ensemble of three servers on ${address[ops]}:$zk_port-$((zk_port + 2))"
zk_started=1
step on ops bash scripts/zk.sh start "$tmp/zk" --ensemble 3 --address "${address[ops]}" "$zk_port" \
    >"$tmp/zk.connect"
zk=$(tail -n 1 "$tmp/zk.connect")
echo "    connect string: $zk"

#  --------------------------------------------------------------------------
#  The cluster: three groups, one node per machine

cluster="$zk/zcqrs/demo"
zcqrs=("$build/zcqrs")
echo
echo "\$ zcqrs cluster create --zk $cluster --groups 3"
step on ops "${zcqrs[@]}" cluster create --zk "$cluster" --groups 3

declare -A endpoint=()
for index in 0 1 2; do
    where=${machines[$index]}
    port=${base_port[$where]}
    endpoint[$where.command]=tcp://${address[$where]}:$port
    endpoint[$where.events]=tcp://${address[$where]}:$((port + 1))
    endpoint[$where.query]=tcp://${address[$where]}:$((port + 2))
done

start_node() {   # MACHINE GROUP
    local where=$1 group=$2
    #  not through `on`: $! must be zcqrsd's pid (`ip netns exec` execs it)
    local prefix=()
    [[ $mode == netns ]] && prefix=(ip netns exec "$tag-$where")
    "${prefix[@]}" "$build/zcqrsd" --cluster "$cluster" --node "n$group" --group "$group" \
        --data "$tmp/$where/data" --domain bank --zk-session-ms 2000 --http none \
        --command "${endpoint[$where.command]}" --events "${endpoint[$where.events]}" \
        --query "${endpoint[$where.query]}" \
        >"$tmp/$where.out" 2>>"$tmp/$where.log" &
    node_pid[$where]=$!
}

wait_node() {   # MACHINE: until it printed its endpoints
    local where=$1 deadline=$((SECONDS + 60))
    until grep -q '^query ' "$tmp/$where.out" 2>/dev/null; do
        if ! kill -0 "${node_pid[$where]}" 2>/dev/null || ((SECONDS >= deadline)); then
            echo "cluster-demo: the node on $where did not start; its log:" >&2
            tail -n 20 "$tmp/$where.log" >&2
            exit 1
        fi
        sleep 0.05
    done
}

echo
echo "==> one zcqrsd per machine: n0 leads group 0 on m1, n1 group 1 on m2, n2 group 2 on m3"
for index in 0 1 2; do
    mkdir -p "$tmp/${machines[$index]}"
    start_node "${machines[$index]}" "$index"
done
for index in 0 1 2; do
    where=${machines[$index]}
    wait_node "$where"
    echo "    n$index on $where: pid ${node_pid[$where]}, command ${endpoint[$where.command]}," \
         "query ${endpoint[$where.query]}"
done

#  --------------------------------------------------------------------------
#  Before any load: the network is what it should be

echo
echo "==> checking the network before any load"
if [[ $mode == netns ]]; then
    for where in "${machines[@]}" ops; do
        have=$(ip -n "$tag-$where" -4 -o addr show | awk '$2 != "lo" { print $4 }' | tr '\n' ' ')
        if [[ $have == "${address[$where]}/24 " ]]; then
            echo "    $tag-$where has ${address[$where]}/24 and nothing else"
        else
            fail "$tag-$where has addresses '$have', not ${address[$where]}/24"
        fi
    done
    for index in 0 1 2; do
        where=${machines[$index]}
        if ip netns pids "$tag-$where" | grep -qx "${node_pid[$where]}"; then
            echo "    n$index (pid ${node_pid[$where]}) runs inside $tag-$where"
        else
            fail "n$index does not run inside $tag-$where"
        fi
    done
fi
checked=0
for where in "${machines[@]}" ops; do
    for other in "${machines[@]}"; do
        for kind in command query; do
            hostport=${endpoint[$other.$kind]#tcp://}
            if reach "$where" "${hostport%:*}" "${hostport##*:}"; then
                checked=$((checked + 1))
            else
                fail "$where cannot reach $other's $kind endpoint ($hostport)"
            fi
        done
    done
    for offset in 0 1 2; do
        if reach "$where" "${address[ops]}" $((zk_port + offset)); then
            checked=$((checked + 1))
        else
            fail "$where cannot reach ZooKeeper at ${address[ops]}:$((zk_port + offset))"
        fi
    done
done
echo "    $checked connections checked: every machine and ops reach every node and every ZooKeeper server"
((unexpected == 0)) || exit 1

#  wait until every group is led, then show the cluster as a node sees it
deadline=$((SECONDS + 60))
until on ops "${zcqrs[@]}" --query "${endpoint[m1.query]}" --json cluster 2>/dev/null \
        | $python -c 'import json, sys
doc = json.load(sys.stdin)
sys.exit(0 if len(doc["nodes"]) == 3 and all(g["leader"] for g in doc["groups"]) else 1)'; do
    ((SECONDS < deadline)) || { echo "cluster-demo: the groups got no leaders" >&2; exit 1; }
    sleep 0.1
done
echo
echo "\$ zcqrs --query ${endpoint[m1.query]} cluster     # any node answers"
on ops "${zcqrs[@]}" --query "${endpoint[m1.query]}" cluster | $python -c 'import json, sys
doc = json.load(sys.stdin)
print("cluster %s: %d slots, map version %s" % (doc["id"], doc["slots"], doc["map_version"]))
for first, last, group in doc["map"]:
    print("  slots %5d-%5d -> group %d" % (first, last, group))
for group in doc["groups"]:
    print("  group %d: leader %s, epoch %d, isr %s" % (group["group"], group["leader"],
          group["epoch"], group["isr"]))'

seeds=$(IFS=,; echo "${endpoint[m1.query]},${endpoint[m2.query]},${endpoint[m3.query]}")
load() { step on ops env PYTHONPATH="$build/python" $python scripts/cluster_demo.py "$tmp/acknowledged" "$seeds" "$@"; }

#  --------------------------------------------------------------------------
#  The story

echo
echo "==> bank load from Python (zcqrs.ClusterClient, seeds: every node's query endpoint)"
load load || fail "the load phase"

echo
echo "==> SIGKILL to n1 (group 1's only replica, on m2)"
kill -KILL "${node_pid[m2]}"
wait "${node_pid[m2]}" 2>/dev/null || true
node_pid[m2]=
echo "    killed; group 1 has no leader now, groups 0 and 2 are untouched"
load outage 1 || fail "the outage phase"

echo
echo "==> n1 restarted on m2, same data directory and endpoints"
: >"$tmp/m2.out"
start_node m2 1
wait_node m2
echo "    n1: pid ${node_pid[m2]}"
load recover || fail "the recovery phase"

echo
echo "==> closing check: each group's log read through its node (\`read\`), the bank's views"
load check || fail "the closing check"

#  --------------------------------------------------------------------------
#  Stop the nodes the way an operator would

echo
echo "==> stopping the nodes with SIGTERM"
for where in "${machines[@]}"; do
    kill -TERM "${node_pid[$where]}"
done
for where in "${machines[@]}"; do
    status=0
    wait "${node_pid[$where]}" || status=$?
    node_pid[$where]=
    ((status == 0)) || fail "the node on $where exited $status, not 0"
done

echo
count=$(wc -l <"$tmp/acknowledged")
if ((unexpected == 0)); then
    echo "cluster-demo: OK ($mode): 3 groups, $count commands acknowledged, each in its group's log once," \
         "a killed node's group refused and came back whole, totals add up"
else
    echo "cluster-demo: FAILED ($mode): $unexpected unexpected outcome(s) above"
    exit 1
fi
