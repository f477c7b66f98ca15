# Sourced by benchmarks/run.sh, whose settings, helpers and variables it uses: the reverse
# scenario, the engine through an `ssh -N -R` agent against ssh -R to sshd and dial mode.
# shellcheck shell=bash disable=SC2154

# start_agent_gateway KEY_FILE: sshpool-demo with an agent listener and one agent user, r0,
# whose authorized key is KEY_FILE.pub and whose -R port is 8000 (32 channels per connection:
# its one agent carries the whole load); sets gw_port, agent_port and agent_host_key (the
# listener's public key, for known_hosts).
start_agent_gateway() {
  local config=$work/reverse-gateway.json line fd
  cp "$1.pub" "$work/r0.keys"
  cat >"$config" <<EOF
{"listen": "127.0.0.1:0", "log_level": "warn", "agent_listen": "127.0.0.1:0",
 "agent_host_key": "reverse-host-key", "ssh_max_channels": 32,
 "users": {"r0": {"mode": "agent", "authorized_keys_file": "r0.keys", "target_port": 8000}}}
EOF
  agent_host_key=$("$demo" --config "$config" --check-config 2>/dev/null |
    sed -n 's/.*"host_public_key": "\(.*\)".*/\1/p')
  exec {fd}< <(exec setsid "$demo" --config "$config" 2>"$work/sshpool-demo.log")
  pids+=($!)
  if ! read -r -t 30 line <&"$fd" || [[ $line != *"agents dial in on port "* ]]; then
    echo "run.sh: sshpool-demo did not start its agent listener" >&2
    return 1
  fi
  agent_port=${line##*on port }
  agent_port=${agent_port%% *}
  if ! read -r -t 30 line <&"$fd"; then
    echo "run.sh: sshpool-demo did not start" >&2
    return 1
  fi
  gw_port=${line##*:}
}

scenario_reverse() {
  local csv=$results/reverse-$stamp.csv gw_csv=$results/reverse-gateway-$stamp.csv
  local gw_port agent_port agent_host_key fwd_port deadline sizing
  local -a wrk_args opts eargs
  start_sshd reverse || return 1
  start_nginx reverse || return 1
  # The OpenSSH equivalent: the user's machine (nginx is its service) exposes it by ssh -R to
  # a real sshd, which listens on the port.
  mapfile -t opts < <(ssh_opts)
  fwd_port=$(free_port)
  ssh "${opts[@]}" -n -N -R "127.0.0.1:$fwd_port:127.0.0.1:$nginx_port" \
    "$SSHD_USER@127.0.0.1" >"$work/reverse-ssh-R.log" 2>&1 &
  pids+=($!)
  wait_accepting "$fwd_port" "${pids[-1]}" "sshd's -R port" || return 1
  mapfile -t eargs < <(engine_args)
  if ((smoke)); then
    sizing=(--duration 1 --rounds 1 --max-requests 5000)
  else
    sizing=(--duration "$duration" --rounds 3)
  fi
  echo "== reverse: the engine through its ssh -N -R agent (engine-agent), ssh -N -R to sshd" \
    "(ssh-R, on :$fwd_port) and the engine dialing the sshd (engine), nginx (the user's" \
    "service) on :$nginx_port"
  "$bench" "${sizing[@]}" --paths ssh-R,engine-agent,engine --ssh-r-port "$fwd_port" \
    --direct-port "$nginx_port" "${eargs[@]}" --sshd-pid "$SSHD_PID" \
    --body-bytes "$body_bytes" --csv "$csv" "${extra[@]}" || return 1
  echo "  targets: engine-agent / ssh-R >= 1.0x req/s, p99 no worse"

  # The gateway through an agent against the same ssh -R, both under wrk.
  ssh-keygen -q -t ed25519 -N '' -f "$work/reverse-agent-key"
  start_agent_gateway "$work/reverse-agent-key" || return 1
  echo "[127.0.0.1]:$agent_port $agent_host_key" >"$work/reverse-known-hosts"
  ssh -F /dev/null -o BatchMode=yes -o UserKnownHostsFile="$work/reverse-known-hosts" \
    -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o ExitOnForwardFailure=yes \
    -i "$work/reverse-agent-key" -p "$agent_port" -n -N -R "8000:127.0.0.1:$nginx_port" \
    r0@127.0.0.1 >"$work/reverse-agent.log" 2>&1 &
  pids+=($!)
  deadline=$((SECONDS + 10))
  until curl -s "http://127.0.0.1:$gw_port/metrics" |
    grep -q '^sshpool_agent_sessions{user="r0"} 1$'; do
    if ((SECONDS >= deadline)) || ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "run.sh: the ssh -R agent did not connect to sshpool-demo" >&2
      cat "$work/reverse-agent.log" >&2
      return 1
    fi
    sleep 0.05
  done
  if ((smoke)); then
    wrk_args=(-t1 -c4 -d1s)
  else
    wrk_args=(-t2 -c32 "-d${duration%.*}s")
  fi
  echo
  echo "== reverse, gateway: sshpool-demo on :$gw_port, its agent (ssh -N -R) on :$agent_port;" \
    "sshd's -R port :$fwd_port; wrk ${wrk_args[*]}"
  export WRK_USERS=r0
  # Warm-up: the agent's channels.
  wrk -t1 -c8 -d1s -s "$root/benchmarks/wrk-users.lua" "http://127.0.0.1:$gw_port/" \
    >/dev/null || return 1
  [[ -s $gw_csv ]] || echo "date,path,wrk,req_per_s,p50_ms,p99_ms,errors" >"$gw_csv"
  local path port result status=0 errors
  declare -A figures
  for path in gateway ssh-R; do
    port=$gw_port
    [[ $path == gateway ]] || port=$fwd_port
    result=$(run_wrk "$port" "${wrk_args[@]}") || return 1
    figures[$path]=$result
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ),$path,${wrk_args[*]},${result// /,}" >>"$gw_csv"
    read -r _ _ _ errors <<<"$result"
    ((errors == 0)) || status=1
  done
  echo
  echo "reverse, gateway (wrk ${wrk_args[*]} --latency; ratio gateway through its agent / ssh -R" \
    "to sshd)"
  printf '  %-8s %10s %9s %9s %7s   %-8s %s\n' path "req/s" "p50 ms" "p99 ms" errors ratio \
    "p99 ratio"
  read -r g_rps g_p50 g_p99 g_err <<<"${figures[gateway]}"
  read -r s_rps s_p50 s_p99 s_err <<<"${figures[ssh-R]}"
  printf '  %-8s %10d %9.2f %9.2f %7d\n' ssh-R "$s_rps" "$s_p50" "$s_p99" "$s_err"
  printf '  %-8s %10d %9.2f %9.2f %7d   %-8s %s\n' gateway "$g_rps" "$g_p50" "$g_p99" "$g_err" \
    "$(awk -v a="$g_rps" -v b="$s_rps" 'BEGIN { printf "%.2fx", b ? a / b : 0 }')" \
    "$(awk -v a="$g_p99" -v b="$s_p99" 'BEGIN { printf "%.2fx", b ? a / b : 0 }')"
  echo "csv: $gw_csv"
  return "$status"
}
