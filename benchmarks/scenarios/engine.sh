# Sourced by benchmarks/run.sh, whose settings, helpers and variables it uses: cold-start,
# footprint, pool-ops and bulk, the scenarios of sshpool-bench-engine.
# shellcheck shell=bash disable=SC2154

scenario_cold_start() {
  local csv=$results/cold-start-$stamp.csv user_count=1000 config status=0
  local -a eargs
  ((smoke == 0)) || user_count=20
  for config in defaults tuned; do
    local tuning=()
    [[ $config == defaults ]] || tuning=(--connectors 8 --handshake-rate 1000)
    # OpenSSH's default MaxStartups, not raised: refusals are part of what is measured.
    start_sshd cold-start 10:30:100 || return 1
    start_nginx cold-start || return 1
    mapfile -t eargs < <(engine_args)
    echo "== cold-start, engine $config ${tuning[*]}: sshd MaxStartups 10:30:100 on" \
      "$SSHD_PORT, ulimit -n $(ulimit -n)"
    "$bench_engine" cold-start "${eargs[@]}" --target-port "$nginx_port" --users "$user_count" \
      --sshd-log "$SSHD_DIR/sshd.log" --csv "$csv" "${tuning[@]}" || status=1
    stop_processes
    echo
  done
  echo "csv: $csv"
  return "$status"
}

scenario_footprint() {
  local csv=$results/footprint-$stamp.csv sizing=(--users 1000 --steps 10)
  local -a eargs
  ((smoke == 0)) || sizing=(--users 20 --steps 2)
  start_sshd footprint 10:30:100 || return 1
  start_nginx footprint || return 1
  mapfile -t eargs < <(engine_args)
  echo "== footprint: sshd on $SSHD_PORT"
  "$bench_engine" footprint "${eargs[@]}" --target-port "$nginx_port" "${sizing[@]}" \
    --handshake-rate 1000 --csv "$csv" || return 1
  echo "csv: $csv"
}

scenario_pool_ops() {
  local csv=$results/pool-ops-$stamp.csv seconds=5
  local -a eargs
  ((smoke == 0)) || seconds=0.3
  start_sshd pool-ops || return 1
  start_nginx pool-ops || return 1
  mapfile -t eargs < <(engine_args)
  echo "== pool-ops: sshd on $SSHD_PORT"
  if [[ -z $baseline ]]; then
    "$bench_engine" pool-ops "${eargs[@]}" --target-port "$nginx_port" --duration "$seconds" \
      --csv "$csv" || return 1
    echo "csv: $csv"
    return
  fi
  local before=$results/pool-ops-before-$baseline_sha-$stamp.csv turn bin out
  for ((turn = 1; turn <= 2 * turns; turn++)); do
    if ((turn % 2)); then bin=$baseline_build/benchmarks/sshpool-bench-engine out=$before; else
      bin=$bench_engine out=$csv
    fi
    "$bin" pool-ops "${eargs[@]}" --target-port "$nginx_port" --duration "$seconds" \
      --csv "$out" >/dev/null || return 1
  done
  echo "pool-ops: before / after"
  print_before_after case ops_per_s p50_ms -- "$before" "$csv" || return 1
  echo "csv: $before $csv"
}

scenario_bulk() {
  local csv=$results/bulk-$stamp.csv bytes=$((100 << 20)) rounds=7 cipher=aes128-gcm@openssh.com
  local stream_bytes=$((10 << 20))
  local -a eargs
  ((smoke == 0)) || bytes=$((1 << 20)) stream_bytes=$((128 << 10)) rounds=1
  start_sshd bulk || return 1
  start_nginx bulk "$bytes" || return 1
  head -c "$stream_bytes" /dev/urandom >"$work/bulk-nginx/files/bulk-streams"
  chmod a+r "$work/bulk-nginx/files/bulk-streams"
  start_tunnel bulk-ssh-L exec -c "$cipher" || return 1
  mapfile -t eargs < <(engine_args)
  echo "== bulk: sshd on $SSHD_PORT, ssh -c $cipher -L (exec'd) on $tunnel_port"
  "$bench_engine" bulk "${eargs[@]}" --target-port "$nginx_port" --ssh-l-port "$tunnel_port" \
    --cipher "$cipher" --bytes "$bytes" --streams 8 --stream-file /files/bulk-streams \
    --stream-bytes "$stream_bytes" --rounds "$rounds" --csv "$csv" || return 1
  echo "csv: $csv"
}
