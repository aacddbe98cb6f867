#!/usr/bin/env bash
#  run.sh: build the fuzz targets, replay the saved crashers, then fuzz each
#  target for a bounded time. Exits non-zero when any crasher still crashes
#  or fuzzing finds a new crash, leak, hang or failed property.
#
#      bash tests/fuzz/run.sh                    # 60 s per target
#      bash tests/fuzz/run.sh --seconds 10       # a quick look
#      bash tests/fuzz/run.sh --replay-only      # crashers and seeds, no fuzzing
#      bash tests/fuzz/run.sh --targets "fuzz_codec fuzz_event"
#      bash tests/fuzz/run.sh --build build-fuzz-ci
#
#  Layout (tests/fuzz/):
#    corpus/<target>/     seed corpus, committed (make_corpus.py writes it)
#    crashers/<target>/   inputs that crashed once: replayed every run, so a
#                         fixed bug stays fixed (and an open one keeps failing)
#  In the build dir: <target> binaries, corpus/<target>/ (the working corpus,
#  kept between runs), artifacts/ (new crash-*, leak-*, timeout-* inputs)
#  and logs/.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=60
build="$root/build-fuzz"
targets="fuzz_codec fuzz_event fuzz_event_read fuzz_request fuzz_catchup fuzz_config"
replay_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        --targets) targets=$2; shift 2 ;;
        --replay-only) replay_only=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$build" in /*) ;; *) build="$root/$build" ;; esac

bash "$here/build.sh" "$build" || { echo "run.sh: build failed" >&2; exit 1; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp:print_suppressions=0}
mkdir -p "$build/artifacts" "$build/logs"
failures=()
summary=()

for target in $targets; do
    binary="$build/$target"
    seeds="$here/corpus/$target"
    crashers="$here/crashers/$target"
    work="$build/corpus/$target"
    mkdir -p "$work"

    #  1. saved crashers, one process each so one crash does not hide another
    if [ -d "$crashers" ] && [ -n "$(ls -A "$crashers" 2>/dev/null)" ]; then
        for input in "$crashers"/*; do
            log="$build/logs/$target-replay-$(basename "$input").log"
            if timeout 300 "$binary" -timeout=150 -artifact_prefix="$build/artifacts/$target-replay-" "$input" >"$log" 2>&1; then
                echo "replay  $target $(basename "$input"): ok"
            else
                echo "replay  $target $(basename "$input"): CRASHES (log: $log)"
                grep -m3 -E "FUZZ_ASSERT|runtime error|ERROR: (Address|Leak|libFuzzer)" "$log" | sed 's/^/        /'
                failures+=("$target: crasher $(basename "$input")")
            fi
        done
    fi

    #  2. the seed corpus once (fast, catches regressions on known inputs)
    log="$build/logs/$target-seeds.log"
    if ! timeout 900 "$binary" -timeout=150 -runs=0 -artifact_prefix="$build/artifacts/$target-seeds-" "$seeds" >"$log" 2>&1; then
        echo "seeds   $target: CRASH (log: $log)"
        grep -m3 -E "FUZZ_ASSERT|runtime error|ERROR: (Address|Leak|libFuzzer)" "$log" | sed 's/^/        /'
        failures+=("$target: seed corpus")
        continue
    fi
    [ "$replay_only" = 1 ] && continue

    #  3. fuzz for a bounded time
    log="$build/logs/$target-fuzz.log"
    start=$(date +%s)
    timeout $((seconds + 300)) "$binary" -max_total_time="$seconds" -timeout=150 \
        -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$build/artifacts/$target-" \
        "$work" "$seeds" >"$log" 2>&1
    rc=$?
    elapsed=$(( $(date +%s) - start ))
    cov=$(grep -E "^#[0-9]+[[:space:]].*cov: " "$log" | tail -1 | sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/cov \1, ft \2, corpus \3/')
    execs=$(grep -m1 "stat::number_of_executed_units" "$log" | awk '{print $2}')
    rate=$(grep -m1 "stat::average_exec_per_sec" "$log" | awk '{print $2}')
    line=$(printf "%-13s %6s exec/s  %9s runs  %s  (%ss)" "$target" "${rate:-?}" "${execs:-?}" "${cov:-no cov line}" "$elapsed")
    if [ $rc -ne 0 ]; then
        artifact=$(grep -o "Test unit written to .*" "$log" | tail -1 | sed 's/Test unit written to //')
        echo "fuzz    $target: FAILED rc=$rc (log: $log) ${artifact:+input: $artifact}"
        grep -m3 -E "FUZZ_ASSERT|runtime error|ERROR: (Address|Leak|libFuzzer)|SUMMARY" "$log" | sed 's/^/        /'
        failures+=("$target: fuzzing (rc $rc) ${artifact}")
        line="$line  FAILED"
    else
        echo "fuzz    $target: ok"
    fi
    summary+=("$line")
done

echo
if [ "$replay_only" = 1 ]; then
    echo "== replay only: crashers and seed corpora =="
else
    echo "== fuzz summary (${seconds}s per target) =="
fi
for line in "${summary[@]+"${summary[@]}"}"; do
    echo "$line"
done
if [ ${#failures[@]} -gt 0 ]; then
    echo
    echo "== ${#failures[@]} failure(s) =="
    for failure in "${failures[@]}"; do
        echo "  $failure"
    done
    echo "Save a new crash input under tests/fuzz/crashers/<target>/ to replay it on every run."
    exit 1
fi
echo "no crash"
