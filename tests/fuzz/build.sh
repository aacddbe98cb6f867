#!/usr/bin/env bash
#  build.sh: build the libFuzzer targets of tests/fuzz with clang, apart from
#  the project's CMake build (which uses gcc). Compiles the library sources
#  the targets need with -fsanitize=fuzzer-no-link,address,undefined, then
#  links each target with -fsanitize=fuzzer,address,undefined.
#
#      bash tests/fuzz/build.sh [BUILD_DIR]      # default: build-fuzz
#
#  Needs only Debian packages: clang (14) and libclang-rt-14-dev for
#  libFuzzer, plus the project's usual -dev packages. When run as root it
#  installs what is missing with apt-get.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-${ZCQ_FUZZ_BUILD:-$root/build-fuzz}}
case "$build" in /*) ;; *) build="$root/$build" ;; esac

targets=(fuzz_codec fuzz_event fuzz_event_read fuzz_request fuzz_catchup fuzz_config)

#  ---- the toolchain ---------------------------------------------------------
find_clang () {
    for candidate in "${CC_FUZZ:-}" clang-14 clang; do
        [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 && { echo "$candidate"; return; }
    done
}

has_libfuzzer () {
    local cc=$1
    [ -n "$cc" ] || return 1
    local dir
    dir=$("$cc" -print-resource-dir 2>/dev/null) || return 1
    ls "$dir"/lib/linux/libclang_rt.fuzzer-*.a >/dev/null 2>&1
}

missing_dev () {
    pkg-config --exists libczmq libzmq msgpack rocksdb jansson libmicrohttpd 2>/dev/null || return 0
    return 1
}

cc=$(find_clang || true)
if ! has_libfuzzer "$cc" || missing_dev; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "build.sh: installing clang, libclang-rt-14-dev and the -dev packages" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq clang-14 libclang-rt-14-dev pkg-config \
            libczmq-dev libzmq3-dev libmsgpack-dev librocksdb-dev libjansson-dev \
            libmicrohttpd-dev >&2
        cc=$(find_clang || true)
    fi
fi
if ! has_libfuzzer "$cc"; then
    echo "build.sh: need clang with libFuzzer (apt-get install clang-14 libclang-rt-14-dev)" >&2
    exit 1
fi

#  ---- flags -------------------------------------------------------------------
san="address,undefined"
common=(-std=gnu11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE -DZCQ_BUILDING
        -fno-sanitize-recover=undefined -Wall -Wno-unused-parameter
        -I"$root/engine/include" -I"$root/engine" -I"$root/actors" -I"$root/examples/bank")
#  ZCQ_FUZZ_CFLAGS adds flags, e.g. -fno-sanitize=nonnull-attribute to look
#  past a known finding while exploring (use another BUILD_DIR then).
#  They come last, after the -fsanitize flags they may refine.
read -r -a extra <<< "${ZCQ_FUZZ_CFLAGS:-}"
read -r -a pkg_cflags <<< "$(pkg-config --cflags libczmq libzmq msgpack rocksdb jansson libmicrohttpd)"
read -r -a pkg_libs <<< "$(pkg-config --libs libczmq libzmq msgpack rocksdb jansson libmicrohttpd)"
#  the cluster's ZooKeeper client (engine/zk.c) has no pkg-config file
libs=("${pkg_libs[@]}" -lzookeeper_mt -lpthread -ldl)

#  the library is every .c of engine/ and actors/ (as in CMakeLists.txt),
#  so that a new source file cannot be left out here
sources=()
for file in "$root"/engine/*.c "$root"/actors/*.c; do
    sources+=("${file#"$root"/}")
done
sources+=(examples/bank/bank.c)

mkdir -p "$build/obj"
jobs=$(nproc 2>/dev/null || echo 2)

#  Compile one library source when it (or a header) is newer than its object.
compile () {
    local source=$1
    local object="$build/obj/$(echo "$source" | tr / _).o"
    local newest
    newest=$(ls -t "$root/$source" "$root"/engine/*.h "$root"/engine/include/*.h \
                 "$root"/actors/*.h "$root"/examples/bank/*.h "$here/build.sh" | head -1)
    if [ ! -f "$object" ] || [ "$newest" -nt "$object" ]; then
        "$cc" "${common[@]}" "${pkg_cflags[@]}" -fsanitize=fuzzer-no-link,"$san" \
            "${extra[@]}" -c "$root/$source" -o "$object"
    fi
    echo "$object"
}

objects=()
pids=()
for source in "${sources[@]}"; do
    objects+=("$build/obj/$(echo "$source" | tr / _).o")
    compile "$source" >/dev/null &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$jobs" ]; then
        wait "${pids[0]}"
        pids=("${pids[@]:1}")
    fi
done
for pid in "${pids[@]}"; do
    wait "$pid"
done

for target in "${targets[@]}"; do
    "$cc" "${common[@]}" "${pkg_cflags[@]}" -fsanitize=fuzzer,"$san" \
        "${extra[@]}" "$here/$target.c" "${objects[@]}" "${libs[@]}" -o "$build/$target"
    echo "built $build/$target"
done
