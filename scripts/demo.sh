#!/usr/bin/env bash
#  demo.sh: the main job. Builds zcqrs, starts a node of the bank domain on a
#  fresh temporary data directory and ephemeral ports, walks through the
#  write side (commands, a rejection, a retried command id, an optimistic
#  concurrency conflict) and the read side (views, the log, health) with the
#  `zcqrs` CLI, then stops the node with SIGTERM and checks it exited 0.
#  The CLI's output is captured, so it is JSON Lines (docs/cli.md): one
#  object per result, errors on stderr; the checks below read that JSON.
#
#      bash scripts/demo.sh                  # build in ./build
#      BUILD_DIR=build-x bash scripts/demo.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${BUILD_DIR:-build}

bash scripts/deps.sh
echo "==> building zcqrsd and zcqrs in $build"
cmake -S . -B "$build" --no-warn-unused-cli \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPython3_EXECUTABLE=/usr/bin/python3 >/dev/null
cmake --build "$build" -j"$(nproc)" --target zcqrsd zcqrs_cli zcqrs_bank_plugin >/dev/null

#  --------------------------------------------------------------------------
#  Start the daemon on a fresh data directory; stop it on any exit

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zcqrs-demo.XXXXXX")
daemon_pid=
cleanup() {
    if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "==> starting: $build/zcqrsd --domain bank --data $tmp/data (ports chosen by the system)"
"$build/zcqrsd" --domain bank --data "$tmp/data" --http none \
    --command 'tcp://127.0.0.1:*' --events 'tcp://127.0.0.1:*' --query 'tcp://127.0.0.1:*' \
    >"$tmp/daemon.out" 2>"$tmp/daemon.log" &
daemon_pid=$!

#  the daemon prints "command EP", "events EP" and "query EP" once it is
#  ready; poll its stdout for them, with a timeout as a safety net
endpoint() { awk -v name="$1" '$1 == name { print $2; exit }' "$tmp/daemon.out"; }
deadline=$((SECONDS + 30))
until [[ -n $(endpoint command) && -n $(endpoint events) && -n $(endpoint query) ]]; do
    if ! kill -0 "$daemon_pid" 2>/dev/null || ((SECONDS >= deadline)); then
        echo "demo: the daemon did not get ready; its output:" >&2
        cat "$tmp/daemon.out" "$tmp/daemon.log" >&2
        exit 1
    fi
    sleep 0.05
done
cat "$tmp/daemon.out"
zcqrs=("$build/zcqrs" --command "$(endpoint command)" --query "$(endpoint query)"
       --events "$(endpoint events)")
echo
echo "Below, \`zcqrs\` stands for: ${zcqrs[*]}"

#  --------------------------------------------------------------------------
#  run ARGS...: echo and run one CLI command, which must succeed.
#  fails ARGS...: the same for a command that must fail; its error is shown.
#  Either way the output is kept in $output for a look afterwards.

unexpected=0
output=
run() {
    echo
    echo "\$ zcqrs $*"
    local status=0
    output=$("${zcqrs[@]}" "$@" 2>&1) || status=$?
    [[ -z $output ]] || printf '%s\n' "$output"
    if ((status != 0)); then
        echo "demo: UNEXPECTED: this command failed (exit $status)" >&2
        unexpected=$((unexpected + 1))
    fi
}
fails() {
    echo
    echo "\$ zcqrs $*    # expected to fail"
    local status=0
    output=$("${zcqrs[@]}" "$@" 2>&1) || status=$?
    [[ -z $output ]] || printf '%s\n' "$output"
    if ((status == 0)); then
        echo "demo: UNEXPECTED: this command succeeded" >&2
        unexpected=$((unexpected + 1))
    else
        echo "(failed as expected, exit $status)"
    fi
}
expect_output() {   # PATTERN WHAT: check the last command's output
    if ! grep -Eq "$1" <<<"$output"; then
        echo "demo: UNEXPECTED: the output does not show $2" >&2
        unexpected=$((unexpected + 1))
    fi
}

echo
echo "==> write side: commands on account aggregates (amounts are cents)"
run send account alice-1 open owner=alice
run send account bob-1 open owner=bob
run send account alice-1 deposit amount=10000
run send account bob-1 deposit amount=2500
run send account alice-1 withdraw amount=3000

echo
echo "==> a rule says no: bob has 25.00, not 1000.00"
fails send account bob-1 withdraw amount=100000
expect_output 'rejected' "a rejection"

echo
echo "==> a retried command id is applied once: the second send reports a duplicate"
run send account bob-1 deposit amount=500 --id demo-retry-1
run send account bob-1 deposit amount=500 --id demo-retry-1
expect_output '"duplicate":true' "a duplicate"

echo
echo "==> optimistic concurrency: alice-1 is at version 3, not 1"
fails send account alice-1 deposit amount=100 --expect 1
expect_output 'conflict' "a conflict"
run send account alice-1 deposit amount=100 --expect 3
position=$(grep -Eo '"position":[0-9]+' <<<"$output" | grep -Eo '[0-9]+$' || true)
position=${position:-1}

echo
echo "==> read side: views are eventually consistent; --min-position waits for a write"
run get accounts alice-1 --min-position "$position"
run list accounts
run get totals bank
run views
# shellcheck disable=SC2162  # `read` here is the CLI's command, not bash's
run read --from 1 --limit 5
run health
head=$(grep -Eo '"head":[0-9]+' <<<"$output" | grep -Eo '[0-9]+$' || echo '?')

#  --------------------------------------------------------------------------
#  Stop the daemon the way an operator would, and check it stopped cleanly

echo
echo "==> stopping the daemon with SIGTERM"
kill -TERM "$daemon_pid"
daemon_status=0
wait "$daemon_pid" || daemon_status=$?
daemon_pid=
cat "$tmp/daemon.log"
if ((daemon_status != 0)); then
    echo "demo: UNEXPECTED: the daemon exited $daemon_status, not 0" >&2
    unexpected=$((unexpected + 1))
fi
rm -rf "$tmp"

echo
if ((unexpected == 0)); then
    echo "demo: OK: 2 accounts, $head events in the log, every command behaved as expected, daemon exited 0"
else
    echo "demo: FAILED: $unexpected unexpected outcome(s) above (log head $head, daemon exit $daemon_status)"
    exit 1
fi
