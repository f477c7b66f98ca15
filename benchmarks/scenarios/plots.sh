# Sourced by benchmarks/run.sh, whose settings, helpers and variables it uses: the gnuplot
# PNGs of a run's CSVs.
# shellcheck shell=bash disable=SC2154

make_plots() {
  local cdf=$results/forward-cdf-$stamp.csv fwd=$results/forward-$stamp.csv
  local fp=$results/footprint-$stamp.csv gw=$results/gateway-$stamp.csv dat=$work/plot
  mkdir -p "$dat"
  local term="set terminal pngcairo size 900,560 noenhanced font ',10'; set datafile separator ','"
  if ! gnuplot -e 'set terminal pngcairo' -e 'exit' 2>/dev/null; then
    term="set terminal png size 900,560 noenhanced; set datafile separator ','"
  fi
  if [[ -s $cdf ]]; then
    local plots=() path
    for path in direct ssh-N-L ssh-L-exec engine engine-facade engine-async; do
      awk -F, -v p="$path" '$1 == p { print $3 "," $2 }' "$cdf" >"$dat/cdf-$path.csv"
      [[ ! -s $dat/cdf-$path.csv ]] ||
        plots+=("'$dat/cdf-$path.csv' using 1:2 with lines lw 2 title '$path'")
    done
    local joined
    joined=$(printf '%s, ' "${plots[@]}")
    gnuplot <<EOF
$term; set output '$results/forward-cdf-$stamp.png'
set title 'forward: latency CDF, 100-byte responses, median round'
set xlabel 'latency (ms, log)'; set ylabel 'percentile'; set logscale x; set grid
set key bottom right; plot ${joined%, }
EOF
    echo "plot: $results/forward-cdf-$stamp.png"
  fi
  if [[ -s $fwd ]]; then
    awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) c[$i] = i; next }
      $c["median_round"] == 1 && $c["channel_reuse"] == "on" && $c["path"] == "engine" {
        engine[$c["users"]] = $c["req_per_s"] }
      $c["median_round"] == 1 && $c["channel_reuse"] == "on" && $c["path"] == "ssh-L-exec" {
        ssh[$c["users"]] = $c["req_per_s"] }
      END { for (u in engine) print u "," engine[u] "," (u in ssh ? ssh[u] : "NaN") }' "$fwd" |
      sort -t, -n -k1 >"$dat/users.csv"
    if [[ -s $dat/users.csv ]]; then
      gnuplot <<EOF
$term; set output '$results/forward-users-$stamp.png'
set title 'forward: req/s against users (32 requests in flight)'
set xlabel 'users (log)'; set ylabel 'req/s'; set logscale x; set grid; set yrange [0:*]
plot '$dat/users.csv' using 1:2 with linespoints lw 2 pt 7 title 'engine (actor interface)', \\
  '' using 1:3 with linespoints lw 2 pt 5 title 'ssh -L exec''d, one tunnel per user (max 32)'
EOF
      echo "plot: $results/forward-users-$stamp.png"
    fi
  fi
  if [[ -s $gw ]]; then
    # One line per path: keep-alive and close req/s, in the order the paths ran.
    awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) c[$i] = i; next }
      { p = $c["path"]; if (!(p in seen)) { seen[p] = 1; order[++n] = p }
        rps[p, $c["mode"]] = $c["req_per_s"] }
      END { for (i = 1; i <= n; ++i) print order[i] "," rps[order[i], "keep-alive"] "," \
        rps[order[i], "close"] }' "$gw" >"$dat/gateway.csv"
    local gw_wrk
    gw_wrk=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) c[$i] = i; next }
      { print $c["wrk"]; exit }' "$gw")
    gnuplot <<EOF
$term; set output '$results/gateway-$stamp.png'
set title 'gateway: req/s per path (wrk $gw_wrk, 100-byte bodies)'
set ylabel 'req/s'; set grid ytics; set yrange [0:*]; set key top right
set style data histograms; set style histogram clustered gap 1
set style fill solid 0.8 border -1; set boxwidth 0.9
plot '$dat/gateway.csv' using 2:xtic(1) title 'keep-alive', '' using 3 title 'Connection: close'
EOF
    echo "plot: $results/gateway-$stamp.png"
  fi
  if [[ -s $fp ]]; then
    awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) c[$i] = i; next }
      { print $c["connections"] "," $c["rss_kib"] / 1024 "," $c["threads"] }' "$fp" \
      >"$dat/rss.csv"
    local threads_top
    threads_top=$(awk -F, '$3 > m { m = $3 } END { print 2 * m + 2 }' "$dat/rss.csv")
    gnuplot <<EOF
$term; set output '$results/footprint-$stamp.png'
set title 'footprint: engine RSS and threads against idle connections'
set xlabel 'connections'; set ylabel 'RSS (MiB)'; set y2label 'threads'; set grid
set ytics nomirror; set y2tics; set yrange [0:*]; set y2range [0:$threads_top]
set key top left
plot '$dat/rss.csv' using 1:2 with linespoints lw 2 pt 7 title 'RSS', \
  '' using 1:3 axes x1y2 with linespoints lw 2 pt 5 title 'threads'
EOF
    echo "plot: $results/footprint-$stamp.png"
  fi
}
