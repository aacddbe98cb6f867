#!/usr/bin/env bash
#  valgrind.sh: run a small subset of the cmocka tests under valgrind
#  memcheck: test_codec, test_viewtable and test_node's walk-through (one
#  whole node: store, actors, views, client). Exits non-zero on any
#  memcheck error or leak (definite, indirect or possible).
#
#      bash tests/hostile/valgrind.sh [BUILD_DIR]     # default: build
#
#  BUILD_DIR must be a build without sanitizers (valgrind and ASan do not
#  mix); the three test binaries are built there when missing. Installs
#  valgrind with apt-get when it is missing and we are root.
#  Extra memcheck flags: VALGRIND_FLAGS. Suppressions: valgrind.supp here.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
case "$build" in /*) ;; *) build="$root/$build" ;; esac

if ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >&2
    fi
    command -v valgrind >/dev/null 2>&1 || { echo "valgrind.sh: valgrind is missing" >&2; exit 1; }
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZCQ_SANITIZE=OFF \
        -DZCQ_PYTHON_BINDINGS=OFF >/dev/null || exit 1
fi
if grep -q "^ZCQ_SANITIZE:BOOL=ON" "$build/CMakeCache.txt"; then
    echo "valgrind.sh: $build is a sanitizer build; use one without ZCQ_SANITIZE" >&2
    exit 1
fi
mkdir -p "$build/valgrind"
cmake --build "$build" -j"$(nproc)" --target test_codec test_viewtable test_node \
    >"$build/valgrind/build.log" 2>&1 \
    || { tail -30 "$build/valgrind/build.log"; echo "valgrind.sh: build failed" >&2; exit 1; }

tmp="$build/tests/tmp-valgrind"
mkdir -p "$tmp"
flags=(--error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect,possible
       --errors-for-leak-kinds=definite,indirect,possible --track-origins=yes
       --num-callers=30 --suppressions="$here/valgrind.supp")
read -r -a extra <<< "${VALGRIND_FLAGS:-}"

#  name, binary, test filter (empty = every test of the binary)
runs=(
    "codec      test_codec     "
    "viewtable  test_viewtable "
    "node-walk  test_node      test_walkthrough"
)
status=0
for run in "${runs[@]}"; do
    read -r name binary filter <<< "$run"
    log="$build/valgrind/$name.log"
    start=$(date +%s)
    ZCQ_TEST_TMP="$tmp" ZCQ_TEST_FILTER="${filter:-*}" \
        valgrind "${flags[@]}" "${extra[@]}" --log-file="$log" "$build/tests/$binary" \
        >"$build/valgrind/$name.out" 2>&1
    rc=$?
    elapsed=$(( $(date +%s) - start ))
    errors=$(grep -E "ERROR SUMMARY" "$log" | tail -1 | sed 's/.*ERROR SUMMARY: //')
    leaks=$(grep -E "definitely lost|indirectly lost|possibly lost" "$log" | tail -3 | sed 's/^==[0-9]*== *//' | tr '\n' ';')
    passed=$(grep -cE "^\[       OK \]" "$build/valgrind/$name.out")
    failed=$(grep -cE "^\[  (FAILED|ERROR) \]" "$build/valgrind/$name.out")
    printf "%-10s rc=%d  %3ds  tests ok %s, failed %s  errors: %s  %s\n" \
        "$name" "$rc" "$elapsed" "$passed" "$failed" "${errors:-?}" "${leaks:-no leaks}"
    if [ $rc -ne 0 ]; then
        status=1
        echo "  log: $log"
        grep -m5 -E "^==[0-9]+== (Invalid|Conditional|Use of|Syscall|Mismatched|Source and destination|[0-9,]+ bytes in)" "$log" | sed 's/^/    /'
    fi
done
rm -rf "$tmp"
exit $status
