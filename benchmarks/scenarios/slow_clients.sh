# Sourced by benchmarks/run.sh, whose settings, helpers and variables it uses: the
# slow-clients scenario, the gateway's admission under a flood of slow and idle clients.
# shellcheck shell=bash disable=SC2154

# A normal client's latency through sshpool-demo (wrk, a new connection per request, like new
# clients arriving) with no flood, while slow connections drip a head byte every 3 s, and
# while idle connections send nothing; each flood is more than max_clients (1,024) and comes
# from 32 loopback addresses. The gateway runs with its default admission settings.
scenario_slow_clients() {
  local csv=$results/slow-clients-$stamp.csv gw_port slow=2000 idle=5000 status=0
  local -a wrk_args=(-t1 -c4 -d5s --timeout 2s -H 'Connection: close')
  if ((smoke)); then
    slow=200 idle=300
    wrk_args=(-t1 -c2 -d1s --timeout 2s -H 'Connection: close')
  fi
  start_sshd slow-clients || return 1
  start_nginx slow-clients || return 1
  start_gateway g0 || return 1
  export WRK_USERS=g0
  wrk -t1 -c4 -d1s -s "$root/benchmarks/wrk-users.lua" "http://127.0.0.1:$gw_port/" \
    >/dev/null || return 1
  echo "== slow-clients: sshpool-demo on :$gw_port (defaults: max_clients 1024, 256 per" \
    "source, header_timeout 5 s); normal clients: wrk ${wrk_args[*]}"
  [[ -s $csv ]] || echo "date,flood,connections,req_per_s,p50_ms,p99_ms,errors,held" >"$csv"
  local flood count drip result held line fd flood_pid
  declare -A figures
  for flood in none slow idle; do
    count=0 drip=0 held=0
    [[ $flood != slow ]] || count=$slow drip=3000
    [[ $flood != idle ]] || count=$idle
    if ((count > 0)); then
      exec {fd}< <(exec "$bench_slow" --port "$gw_port" --connections "$count" --drip-ms "$drip" \
        --sources 32 2>"$work/flood.log")
      flood_pid=$!
      if ! read -r -t 90 line <&"$fd" || [[ $line != holding* ]]; then
        echo "run.sh: the $flood flood did not get its connections open" >&2
        return 1
      fi
      held=$(curl -s "http://127.0.0.1:$gw_port/metrics" |
        awk '$1 == "sshpool_gateway_client_connections" { print $2 + 0 }')
    fi
    result=$(run_wrk "$gw_port" "${wrk_args[@]}") || return 1
    if ((count > 0)); then
      kill -TERM "$flood_pid"
      read -r line <&"$fd" || true
      exec {fd}<&-
      wait "$flood_pid" 2>/dev/null || true
    fi
    figures[$flood]="$count $result $held"
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ),$flood,$count,${result// /,},$held" >>"$csv"
  done
  echo
  echo "slow-clients (normal clients: wrk ${wrk_args[*]}; errors: no answer within 2 s or not 2xx)"
  printf '  %-6s %12s %11s %9s %9s %7s %9s   %s\n' flood connections "gw held" "req/s" \
    "p50 ms" "p99 ms" errors "p99 ratio"
  local b_p99 n rps p50 p99 errors
  read -r _ _ _ b_p99 _ _ <<<"${figures[none]}"
  for flood in none slow idle; do
    read -r n rps p50 p99 errors held <<<"${figures[$flood]}"
    printf '  %-6s %12d %11d %9d %9.2f %9.2f %7d %9s\n' "$flood" "$n" "$held" "$rps" "$p50" \
      "$p99" "$errors" "$(awk -v a="$p99" -v b="$b_p99" 'BEGIN { printf "%.2fx", b ? a / b : 0 }')"
    ((errors == 0)) || status=1
  done
  echo "  target: no errors, p99 under 2,000 ms while the flood holds the slots"
  echo "csv: $csv"
  return "$status"
}
