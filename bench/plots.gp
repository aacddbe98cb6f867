# plots.gp: the charts of a zcqrs-bench run, from the data files that
# `zcqrs-bench --plots PREFIX` writes. scripts/bench.sh runs:
#
#     gnuplot -e "prefix='bench/results/2024-01-01-host'" bench/plots.gp
#
# and gets PREFIX-shards.png, PREFIX-latency.png and PREFIX-lag.png.

if (!exists("prefix")) prefix = "bench"
exists_file(name) = system(sprintf("[ -s '%s' ] && echo 1 || echo 0", name)) + 0
rows(name) = system(sprintf("grep -c '^[0-9]' '%s' 2>/dev/null || echo 0", name)) + 0

set terminal pngcairo size 1000,620 font "sans,10" noenhanced
set datafile missing "-"
set grid
set key outside right top

# an empty chart that says why it is empty
empty(text) = sprintf("set label 1 '%s' at graph 0.5, 0.5 center; unset logscale y; set xrange [0:1]; set yrange [0:1]; plot 2 notitle; unset label 1; set xrange [*:*]; set yrange [*:*]", text)

# ---- throughput against shards ---------------------------------------------
shards = prefix . "-shards.dat"
set output prefix . "-shards.png"
set title "zcqrs: commands/s against shards (closed loop)"
set xlabel "shards"
set ylabel "commands/s"
set xtics 1
set yrange [0:*]
set format y "%.0f"
if (exists_file(shards) && rows(shards) > 0) {
    columns = system(sprintf("head -1 '%s' | wc -w", shards)) + 0
    # columns come in pairs, wal then fsync, per workload: one colour per
    # workload, solid for wal, dashed for fsync
    plot for [column = 2:columns] shards using 1:column with linespoints lw 2 \
        linecolor 1 + int((column - 2) / 2) dashtype 1 + (column - 2) % 2 \
        pointtype 7 - ((column - 2) % 2) title columnheader(column)
} else {
    eval empty("no shard runs in this report")
}

# ---- latency percentiles against offered load --------------------------------
set output prefix . "-latency.png"
set title "zcqrs: ack latency against offered load (open loop, deposit-100k)"
set xlabel "offered commands/s"
set ylabel "ack latency, ms (log scale)"
set logscale y
set yrange [*:*]
set format y "%g"
set xtics autofreq
wal = prefix . "-latency-wal.dat"
fsync = prefix . "-latency-fsync.dat"
have_wal = exists_file(wal) && rows(wal) > 0
have_fsync = exists_file(fsync) && rows(fsync) > 0
if (have_wal && have_fsync) {
    plot for [column = 3:6] wal using 1:column with linespoints lw 2 pt 7 \
             title "wal " . word("p50 p90 p99 p99.9", column - 2), \
         for [column = 3:6] fsync using 1:column with linespoints lw 2 pt 5 dt 2 \
             title "fsync " . word("p50 p90 p99 p99.9", column - 2)
} else {
    if (have_wal || have_fsync) {
        file = have_wal ? wal : fsync
        mode = have_wal ? "wal " : "fsync "
        plot for [column = 3:6] file using 1:column with linespoints lw 2 pt 7 \
            title mode . word("p50 p90 p99 p99.9", column - 2)
    } else {
        eval empty("no open-loop runs in this report")
    }
}
unset logscale y

# ---- projection lag over time --------------------------------------------------
lag = prefix . "-lag.dat"
set output prefix . "-lag.png"
set title "zcqrs: projection lag during the headline run (slowest view)"
set xlabel "seconds since the load started"
set ylabel "lag, events"
set y2label "lag, ms (age of the oldest unapplied event)"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
if (exists_file(lag) && rows(lag) > 0) {
    plot lag using 1:3 with lines lw 2 title "events behind the head" axes x1y1, \
         lag using 1:4 with lines lw 1 dt 2 title "ms behind" axes x1y2
} else {
    eval empty("no lag samples in this report")
}
