#!/usr/bin/env bash
#  zk.sh: a private ZooKeeper for tests, demos and CI, on loopback (or on
#  an address of the demo's namespaces).
#
#      scripts/zk.sh start DIR [PORT]             one server (default port 2181)
#      scripts/zk.sh start DIR --ensemble 3 [PORT] three servers: client ports
#                                                 PORT, PORT+1, PORT+2 (default
#                                                 2181); quorum ports above them
#      scripts/zk.sh start DIR [--ensemble 3] --address ADDR [PORT]
#                                                 listen on ADDR, not 127.0.0.1:
#                                                 loopback or 198.18.0.0/15 only
#                                                 (scripts/cluster-demo.sh runs
#                                                 it inside a network namespace)
#      scripts/zk.sh stop DIR                     stop what start DIR started
#
#  Debian 12's `zookeeper` package: QuorumPeerMain with the class path of
#  zookeeper.jar alone (its manifest names the jars it needs; every jar of
#  /usr/share/java fails on two slf4j bridges) plus /etc/zookeeper/conf for
#  log4j. Each server has its own dataDir and log under DIR, listens on
#  ADDR (127.0.0.1 by default) only, with no admin server. `start` returns once every server
#  answers `srvr` as serving (a standalone, leader or follower), or fails
#  after 60 s with the logs' tail. Prints the connect string on stdout.
set -euo pipefail

usage() {
    echo "usage: zk.sh start DIR [--ensemble 3] [--address ADDR] [PORT] | stop DIR" >&2
    exit 2
}

#  Whether $address:$1 answers srvr with a Mode line (it serves requests).
serving() {
    python3 - "$address" "$1" <<'EOF'
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5) as s:
        s.sendall(b"srvr")
        s.settimeout(0.5)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    sys.exit(0 if b"Mode: " in data else 1)
except OSError:
    sys.exit(1)
EOF
}

start() {
    local dir=$1 count=$2 port=$3
    command -v java >/dev/null || { echo "zk.sh: no java (install zookeeper: scripts/deps.sh)" >&2; exit 1; }
    [[ -r /usr/share/java/zookeeper.jar ]] || { echo "zk.sh: no /usr/share/java/zookeeper.jar (install zookeeper)" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local connect="" id
    for ((id = 1; id <= count; id++)); do
        local server="$dir/server$id" client=$((port + id - 1))
        if [[ -f $server/pid ]] && kill -0 "$(cat "$server/pid")" 2>/dev/null; then
            echo "zk.sh: $server already runs (pid $(cat "$server/pid"))" >&2
            exit 1
        fi
        mkdir -p "$server/data"
        {
            echo "tickTime=500"
            echo "initLimit=20"
            echo "syncLimit=10"
            echo "dataDir=$server/data"
            echo "clientPort=$client"
            echo "clientPortAddress=$address"
            echo "admin.enableServer=false"
            echo "4lw.commands.whitelist=srvr,ruok,stat"
            echo "maxSessionTimeout=60000"
            if ((count > 1)); then
                local peer
                for ((peer = 1; peer <= count; peer++)); do
                    echo "server.$peer=$address:$((port + 100 + peer)):$((port + 200 + peer))"
                done
            fi
        } >"$server/zoo.cfg"
        ((count > 1)) && echo "$id" >"$server/data/myid"
        (
            cd "$server"
            exec java -Dzookeeper.log.dir="$server" -Dzookeeper.root.logger=INFO,CONSOLE \
                -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
                org.apache.zookeeper.server.quorum.QuorumPeerMain "$server/zoo.cfg"
        ) >"$server/zookeeper.log" 2>&1 </dev/null &
        echo $! >"$server/pid"
        connect+="${connect:+,}$address:$client"
    done
    local deadline=$((SECONDS + 60))
    for ((id = 1; id <= count; id++)); do
        until serving $((port + id - 1)); do
            if ((SECONDS >= deadline)) || ! kill -0 "$(cat "$dir/server$id/pid")" 2>/dev/null; then
                echo "zk.sh: server $id (port $((port + id - 1))) did not start:" >&2
                tail -n 20 "$dir/server$id/zookeeper.log" >&2
                stop "$dir"
                exit 1
            fi
            sleep 0.1
        done
    done
    echo "$connect"
}

stop() {
    local dir=$1 pidfile pid
    for pidfile in "$dir"/server*/pid; do
        [[ -f $pidfile ]] || continue
        pid=$(cat "$pidfile")
        if kill "$pid" 2>/dev/null; then
            local waited=0
            while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do
                sleep 0.1
                waited=$((waited + 1))
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
}

(($# >= 2)) || usage
action=$1 dir=$2
shift 2
case $action in
    start)
        count=1
        address=127.0.0.1
        while [[ ${1:-} == --* ]]; do
            case $1 in
                --ensemble)
                    count=${2:-}
                    [[ $count == 3 ]] || { echo "zk.sh: --ensemble takes 3" >&2; exit 2; }
                    ;;
                --address)
                    address=${2:-}
                    #  loopback, or the demos' range 198.18.0.0/15 only
                    [[ $address =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ \
                       || $address =~ ^198\.1[89]\.[0-9]+\.[0-9]+$ ]] \
                        || { echo "zk.sh: --address takes 127.x.x.x or 198.18.0.0/15" >&2; exit 2; }
                    ;;
                *) usage ;;
            esac
            shift 2
        done
        port=${1:-2181}
        [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65000)) || usage
        start "$dir" "$count" "$port"
        ;;
    stop) stop "$dir" ;;
    *) usage ;;
esac
