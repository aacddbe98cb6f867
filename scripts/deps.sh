#!/usr/bin/env bash
#  deps.sh: install the Debian 12 packages zcqrs needs to build, test and
#  format itself. Installs only what is missing (checked with dpkg-query), so
#  a second run is silent and touches nothing. Works on a bare debootstrap
#  minbase root (no compiler, no python): as root, or through sudo.
#
#      bash scripts/deps.sh
set -euo pipefail

packages=(
    build-essential cmake pkg-config git
    libczmq-dev libzmq3-dev libmsgpack-dev librocksdb-dev libcmocka-dev libjansson-dev
    # zcqrsd's /metrics endpoint (actors/http.c)
    libmicrohttpd-dev
    python3 python3-dev python3-zmq python3-msgpack python3-pytest
    clang-format
    # promtool, which the metrics tests run over the /metrics exposition
    prometheus
    # the cluster: ZooKeeper's C client, a private server for the tests and
    # demos (zookeeper depends on default-jre), and kazoo for the tests
    libzookeeper-mt-dev zookeeper python3-kazoo
    # scripts/cluster-demo.sh's machines: network namespaces and a bridge
    iproute2
)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$package")
done
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) == 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null; then
    as_root=(sudo)
else
    echo "deps.sh: missing ${missing[*]}; run this as root or install sudo" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
