#!/usr/bin/env bash
#  test.sh: run the whole test suite from scratch. Installs what is missing
#  (scripts/deps.sh), configures, builds, and runs every ctest (the cmocka
#  tests and the pytest protocol suite). Exits with ctest's status.
#
#      bash scripts/test.sh                  # build in ./build
#      BUILD_DIR=build-x bash scripts/test.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${BUILD_DIR:-build}

bash scripts/deps.sh
cmake -S . -B "$build" --no-warn-unused-cli \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPython3_EXECUTABLE=/usr/bin/python3
cmake --build "$build" -j"$(nproc)"

status=0
ctest --test-dir "$build" --output-on-failure || status=$?
exit "$status"
