#!/usr/bin/env bash
#  The ctest `packaging`: what a newcomer does with an installed zcqrs.
#
#  1. cmake --install into a fresh prefix; the files a user needs are there.
#  2. The counter domain (examples/counter), copied out of the tree, builds
#     with pkg-config (its Makefile, and the one line of the README), from
#     the headers alone (no -lzcqrs: the host process provides libzcqrs),
#     and with find_package (its CMakeLists.txt, which also installs it
#     into the prefix's plugin dir).
#  3. check.py, with the installed Python package, runs each plugin in the
#     installed zcqrsd and in zcqrs.Node and checks the view through the
#     Python client.
#
#  usage: run.sh BUILD_DIR SOURCE_DIR PYTHON
set -euo pipefail

build=$(cd "$1" && pwd)
source=$(cd "$2" && pwd)
python=${3:-/usr/bin/python3}

work=$(mktemp -d "${TMPDIR:-/tmp}/zcqrs-packaging.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

step () { printf '== %s\n' "$*"; }
fail () { printf 'packaging: %s\n' "$*" >&2; exit 1; }

step "install into $prefix"
cmake --install "$build" --prefix "$prefix" > "$work/install.log" \
    || { cat "$work/install.log" >&2; fail "cmake --install failed"; }
libdir=$(dirname "$(find "$prefix" -name 'libzcqrs.so.0' -print -quit)")
[ -n "$libdir" ] && [ "$libdir" != . ] || fail "no libzcqrs.so.0 installed"
for file in "$libdir/libzcqrs.so" "$prefix/include/zcqrs.h" "$prefix/include/zcq_domain.h" \
            "$prefix/bin/zcqrsd" "$prefix/bin/zcqrs" "$libdir/zcqrs/bank.so" \
            "$libdir/pkgconfig/zcqrs.pc" "$libdir/cmake/zcqrs/zcqrsConfig.cmake" \
            "$libdir/cmake/zcqrs/zcqrsConfigVersion.cmake"; do
    [ -e "$file" ] || fail "not installed: ${file#"$prefix"/}"
done
pythondir=$(dirname "$(find "$prefix" -path '*/zcqrs/_build.py' -print -quit)")
[ -f "$pythondir/__init__.py" ] || fail "the Python package is not installed"
pythondir=$(dirname "$pythondir")

export PKG_CONFIG_PATH=$libdir/pkgconfig
[ "$(pkg-config --modversion zcqrs)" = "$(sed -n 's/^project (zcqrs VERSION \([0-9.]*\).*/\1/p' "$source/CMakeLists.txt")" ] \
    || fail "pkg-config --modversion zcqrs: $(pkg-config --modversion zcqrs)"

step "counter with pkg-config (make)"
mkdir "$work/make" "$work/cmake"
cp "$source/examples/counter/counter.c" "$source/examples/counter/Makefile" "$work/make/"
make -C "$work/make" CFLAGS="-O2 -Wall -Wextra -Werror" > "$work/make.log" 2>&1 \
    || { cat "$work/make.log" >&2; fail "make failed"; }

step "counter with the one-line build, and from the headers alone (no -lzcqrs)"
mkdir "$work/oneline" "$work/headers"
# shellcheck disable=SC2046  # pkg-config's words are meant to split
cc $(pkg-config --cflags --libs zcqrs) -shared -fPIC "$source/examples/counter/counter.c" \
    -o "$work/oneline/counter.so" || fail "the one-line build failed"
# shellcheck disable=SC2046
cc $(pkg-config --cflags zcqrs) -shared -fPIC "$source/examples/counter/counter.c" \
    -o "$work/headers/counter.so" || fail "the headers-only build failed"
if readelf -d "$work/headers/counter.so" | grep -q libzcqrs; then
    fail "the headers-only plugin links libzcqrs"
fi

step "counter with find_package (cmake)"
cp "$source/examples/counter/counter.c" "$source/examples/counter/CMakeLists.txt" "$work/cmake/"
{
    cmake -S "$work/cmake" -B "$work/cmake/build" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_C_FLAGS="-Werror" \
        && cmake --build "$work/cmake/build" \
        && cmake --install "$work/cmake/build"
} > "$work/cmake.log" 2>&1 || { cat "$work/cmake.log" >&2; fail "cmake build failed"; }
[ -f "$libdir/zcqrs/counter.so" ] || fail "the counter plugin was not installed into $libdir/zcqrs"

step "the plugins in the installed zcqrsd and in zcqrs.Node"
preload=()
if [ -n "${ZCQ_LIBASAN:-}" ]; then
    # a sanitizer build: the interpreter gets the ASan runtime first, and
    # CPython's own allocations at exit are not leaks of ours
    preload=(env "LD_PRELOAD=$ZCQ_LIBASAN"
             "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
fi
PYTHONPATH=$pythondir PYTHONDONTWRITEBYTECODE=1 "${preload[@]}" "$python" \
    "$source/tests/packaging/check.py" \
    --prefix "$prefix" --work "$work" \
    "$work/make/counter.so" "$work/cmake/build/counter.so" "$work/oneline/counter.so" \
    "$work/headers/counter.so"
