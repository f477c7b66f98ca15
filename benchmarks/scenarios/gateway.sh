# Sourced by benchmarks/run.sh, whose settings, helpers and variables it uses: the gateway
# scenario, sshpool-demo with 1, 3 and 100 users against ssh -L and nginx -> ssh -L.
# shellcheck shell=bash disable=SC2154

# run_wrk PORT [wrk args...]: runs wrk (its output into $work/wrk.out) while a live line
# shows the elapsed time; prints "req_per_s p50_ms p99_ms errors". $wrk_scheme: http
# (default) or https.
run_wrk() {
  local port=$1 pid start=$SECONDS
  shift
  wrk --latency "$@" -s "$root/benchmarks/wrk-users.lua" \
    "${wrk_scheme:-http}://127.0.0.1:$port/" \
    >"$work/wrk.out" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    [[ ! -t 2 ]] || printf '\r  wrk on :%s  %d s ' "$port" $((SECONDS - start)) >&2
    sleep 0.5
  done
  [[ ! -t 2 ]] || printf '\r%40s\r' '' >&2
  wait "$pid" || {
    cat "$work/wrk.out" >&2
    return 1
  }
  wrk_figures "$work/wrk.out"
}

# wrk_figures FILE: wrk --latency's output in FILE as "req_per_s p50_ms p99_ms errors".
wrk_figures() {
  awk 'function to_ms(v) {
      if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000
      return v + 0
    }
    $1 == "Requests/sec:" { rps = $2 }
    $1 == "50%" { p50 = to_ms($2) }
    $1 == "99%" { p99 = to_ms($2) }
    /Non-2xx or 3xx responses:/ { errors += $NF }
    /Socket errors:/ { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
    END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, errors }' "$1"
}

# start_gateway USER...: starts sshpool-demo with USERs on the scenario's sshd, each forwarding
# to its nginx; sets gw_port and gw_pid. $gw_extra: more config members (e.g. "tls"), and then
# the files are gateway-tls.json and sshpool-demo-tls.log ($gw_name: gateway-NAME.json and
# sshpool-demo-NAME.log instead).
start_gateway() {
  local name=${gw_name:-${gw_extra:+tls}}
  local config=$work/gateway${name:+-$name}.json line fd entries="" u
  for u in "$@"; do
    entries+="${entries:+,}\"$u\": {\"host\": \"127.0.0.1\", \"port\": $SSHD_PORT,
      \"username\": \"$SSHD_USER\", \"identity_file\": \"$SSHD_IDENTITY\",
      \"known_hosts_file\": \"$SSHD_KNOWN_HOSTS\", \"target_host\": \"127.0.0.1\",
      \"target_port\": $nginx_port}"
  done
  printf '{"listen": "127.0.0.1:0", "log_level": "warn", %s"users": {%s}}\n' \
    "${gw_extra:+$gw_extra, }" "$entries" >"$config"
  exec {fd}< <(exec setsid "$demo" --config "$config" 2>"$work/sshpool-demo${name:+-$name}.log")
  pids+=($!)
  gw_pid=${pids[-1]}
  if ! read -r -t 30 line <&"$fd"; then
    echo "run.sh: sshpool-demo did not start" >&2
    return 1
  fi
  gw_port=${line##*:}
}

# gateway_metric NAME: the value of sshpool-demo's metric NAME (0 if absent).
gateway_metric() {
  curl -s "http://127.0.0.1:$gw_port/metrics" |
    awk -v n="$1" '$1 == n { v = $2 } END { print v + 0 }'
}

# cpu_ticks PID...: the CPU clock ticks (user + system, with the children each has waited
# for) of every PID and every process below it, summed: the shell twin of tree_cpu_seconds
# (tests/support/process_info.cpp). Its difference over a run is the CPU the trees used.
cpu_ticks() {
  local root pid line total=0
  local -a field
  for root in "$@"; do
    for pid in "$root" $(_sshpool_descendants "$root"); do
      { read -r line <"/proc/$pid/stat"; } 2>/dev/null || continue
      # After "pid (comm) ": state is field 3, utime stime cutime cstime fields 14 to 17.
      read -ra field <<<"${line##*) }"
      total=$((total + field[11] + field[12] + field[13] + field[14]))
    done
  done
  echo "$total"
}

# measure_wrk PORT PIDS [wrk args...]: run_wrk, and what the run cost: the CPU of the
# processes PIDS (space-separated, with the processes below them) per request and the sshd's
# processes' CPU over wrk's duration in % of one core (both idle outside it); prints
# "req_per_s p50_ms p99_ms errors requests cpu_us_per_req sshd_pct".
measure_wrk() {
  local port=$1 cpu_pids=$2 result c0 c1 s0 s1 hz
  shift 2
  hz=$(getconf CLK_TCK)
  # shellcheck disable=SC2086  # PIDS is a list
  c0=$(cpu_ticks $cpu_pids)
  s0=$(cpu_ticks "$SSHD_PID")
  result=$(run_wrk "$port" "$@") || return 1
  # shellcheck disable=SC2086
  c1=$(cpu_ticks $cpu_pids)
  s1=$(cpu_ticks "$SSHD_PID")
  awk -v result="$result" -v cpu=$((c1 - c0)) -v sshd=$((s1 - s0)) -v hz="$hz" '
    function to_s(v) {
      sub(/,$/, "", v)
      if (v ~ /ms$/) return v / 1000; if (v ~ /m$/) return v * 60; if (v ~ /s$/) return v + 0
      return v + 0
    }
    $2 == "requests" && $3 == "in" { requests = $1; seconds = to_s($4) }
    END {
      printf "%s %d %.1f %.0f\n", result, requests, requests ? cpu / hz * 1e6 / requests : 0,
        seconds ? sshd / hz * 100 / seconds : 0
    }' "$work/wrk.out"
}

# warm_up PORT: one second of `wrk -t1 -c32` on PORT (users: $WRK_USERS, scheme $wrk_scheme),
# answers unchecked.
warm_up() {
  wrk -t1 -c32 -d1s --timeout 10s -s "$root/benchmarks/wrk-users.lua" \
    "${wrk_scheme:-http}://127.0.0.1:$1/" \
    >/dev/null
}

# ratio FIGURES_A FIGURES_B FIELD: field FIELD (0-based) of the space-separated FIGURES_A over
# that of FIGURES_B, as "1.23x".
ratio() {
  local -a x y
  read -r -a x <<<"$1"
  read -r -a y <<<"$2"
  awk -v a="${x[$3]}" -v b="${y[$3]}" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }'
}

# The gateway scenario: `wrk -t2 -c32` (keep-alive, then the same with `Connection: close`)
# on every path to the same nginx, interleaved within each mode: bare `ssh -L` (exec'd),
# nginx as a reverse proxy with a keep-alive upstream to its own `ssh -L` (the pair a user
# would otherwise deploy), and sshpool-demo with its default pool settings, one process
# holding every user, requests round robin over 1, 3 and 100 users (--smoke: 5), and a second
# sshpool-demo with TLS on its front end (a self-signed P-256 certificate), 1 user. Each path's
# CPU is that of its own processes (the gateway; nginx and its ssh client; the ssh client);
# wrk, the scenario's nginx and sshd are shared by all and not in it; sshd's share is shown
# apart.
scenario_gateway() {
  local csv=$results/gateway-$stamp.csv gw_port gw_pid launched_port many=100 k
  local -a wrk_args users f
  start_sshd gateway || return 1
  start_nginx gateway || return 1
  start_tunnel gateway-ssh-L exec || return 1
  local ssh_port=$tunnel_port ssh_pid=${pids[-1]}
  start_tunnel gateway-nginx-ssh-L exec || return 1
  local proxy_ssh_pid=${pids[-1]}
  launch_nginx "$work/gateway-proxy" nginx-proxy.conf.in -e "s|@UPSTREAM@|$tunnel_port|g" ||
    return 1
  local proxy_port=$launched_port proxy_pid=${pids[-1]}
  if ((smoke)); then
    wrk_args=(-t1 -c4 -d1s)
    many=5
  else
    wrk_args=(-t2 -c32 "-d${duration%.*}s")
  fi
  for ((k = 0; k < many; ++k)); do
    users+=("g$k")
  done
  # The TLS gateway first (start_gateway sets gw_port and gw_pid: the plain one's stay).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout "$work/tls.key" \
    -out "$work/tls.pem" 2>/dev/null || return 1
  gw_extra="\"tls\": {\"cert_file\": \"$work/tls.pem\", \"key_file\": \"$work/tls.key\"}" \
    start_gateway g0 || return 1
  local tls_port=$gw_port tls_pid=$gw_pid
  # One user's requests on one SSH connection of 32 channels instead of the default pool's
  # three of ten: the same sshd sees one connection, as with ssh -L.
  gw_name=1c gw_extra='"max_connections_per_user": 1, "ssh_max_channels": 32' \
    start_gateway g0 || return 1
  local one_port=$gw_port one_pid=$gw_pid
  start_gateway "${users[@]}" || return 1
  echo "== gateway: sshpool-demo on :$gw_port ($many users g0..g$((many - 1)), default pool" \
    "settings, requests round robin by /u/USER/), with TLS (g0) on :$tls_port, ssh -L" \
    "(exec'd) on :$ssh_port, nginx -> ssh -L on :$proxy_port, nginx on :$nginx_port;" \
    "wrk ${wrk_args[*]}"
  # Warm-up: every user's first connection (at the gateway's handshake rate, 100/s by
  # default) until each user has a pool and there are as many connections as users, then on
  # until a second of load opens no new connection: a user that gets a second request while
  # its connections are busy is given a new one, up to max_connections_per_user (the pool's
  # rule), so the runs measure the steady state and not the handshakes that reach it. Then
  # the first user's and the first three's connections at 32 in flight; the proxy's
  # upstream connections and the tunnels' channels.
  local deadline=$((SECONDS + 60)) warm opened=-1 now
  export WRK_USERS="${users[*]}"
  until (($(gateway_metric sshpool_pool_users) >= many &&
    $(gateway_metric sshpool_ssh_connections_opened_total) >= many)); do
    if ((SECONDS >= deadline)); then
      echo "run.sh: sshpool-demo did not connect its $many users within 60 s" >&2
      return 1
    fi
    warm_up "$gw_port"
  done
  while now=$(gateway_metric sshpool_ssh_connections_opened_total) && ((now != opened)); do
    if ((SECONDS >= deadline)); then
      echo "run.sh: note: the gateway still opened connections after 60 s ($now)" >&2
      break
    fi
    opened=$now
    warm_up "$gw_port"
  done
  echo "== warm: $opened SSH connections for $many users"
  for warm in "g0" "g0 g1 g2"; do
    WRK_USERS=$warm warm_up "$gw_port"
  done
  WRK_USERS=g0 wrk_scheme=https warm_up "$tls_port"
  WRK_USERS=g0 warm_up "$one_port"
  warm_up "$proxy_port"
  warm_up "$ssh_port"
  local header=date,mode,path,users,wrk,req_per_s,p50_ms,p99_ms,errors,requests,cpu_us_per_req
  [[ -s $csv ]] || echo "$header,cpu_of,sshd_cpu_pct" >"$csv"
  local mode path port n cpu_pids cpu_of result status=0 wrk_scheme
  local -a paths=(ssh-L nginx-ssh-L gateway-1u gateway-1c gateway-tls gateway-3u "gateway-${many}u")
  declare -A figures
  for mode in keep-alive close; do
    local hdr=()
    [[ $mode == keep-alive ]] || hdr=(-H 'Connection: close')
    for path in "${paths[@]}"; do
      n="" wrk_scheme=http
      case $path in
      ssh-L) port=$ssh_port cpu_pids=$ssh_pid cpu_of="ssh" ;;
      gateway-tls)
        port=$tls_port cpu_pids=$tls_pid cpu_of="sshpool-demo" n=1 wrk_scheme=https
        ;;
      nginx-ssh-L) port=$proxy_port cpu_pids="$proxy_pid $proxy_ssh_pid" cpu_of="nginx+ssh" ;;
      gateway-1c) port=$one_port cpu_pids=$one_pid cpu_of="sshpool-demo" n=1 ;;
      *)
        port=$gw_port cpu_pids=$gw_pid cpu_of="sshpool-demo" n=${path#gateway-}
        n=${n%u}
        ;;
      esac
      export WRK_USERS="${users[*]:0:${n:-1}}"
      result=$(measure_wrk "$port" "$cpu_pids" "${wrk_args[@]}" "${hdr[@]}") || return 1
      figures[$mode/$path]="$result $cpu_of"
      read -r -a f <<<"$result"
      echo "$(date -u +%Y-%m-%dT%H:%M:%SZ),$mode,$path,$n,${wrk_args[*]},$(IFS=,
        echo "${f[*]:0:6}"),$cpu_of,${f[6]}" >>"$csv"
      ((f[3] == 0)) || status=1
    done
  done
  echo
  echo "gateway (wrk ${wrk_args[*]} --latency, 100-byte bodies; cpu us/req: user + system of" \
    "the path's own processes (cpu of) per request; sshd %: its processes' CPU over the run," \
    "in % of one core)"
  printf '  %-11s %-13s %9s %8s %8s %7s %11s %-13s %7s\n' mode path "req/s" "p50 ms" "p99 ms" \
    errors "cpu us/req" "cpu of" "sshd %"
  for mode in keep-alive close; do
    for path in "${paths[@]}"; do
      read -r -a f <<<"${figures[$mode/$path]}"
      printf '  %-11s %-13s %9d %8.2f %8.2f %7d %11.1f %-13s %7.0f\n' "$mode" "$path" "${f[0]}" \
        "${f[1]}" "${f[2]}" "${f[3]}" "${f[5]}" "${f[7]}" "${f[6]}"
    done
  done
  echo "ratios (the gateway: 1 user):"
  local spec label x y field target
  for spec in \
    "keep-alive: gateway / nginx -> ssh -L, req/s|keep-alive/gateway-1u|keep-alive/nginx-ssh-L|0|>= 1.0x" \
    "keep-alive: gateway / ssh -L, req/s|keep-alive/gateway-1u|keep-alive/ssh-L|0|>= 0.8x" \
    "keep-alive: gateway p99 / ssh -L p99|keep-alive/gateway-1u|keep-alive/ssh-L|2|<= 2.0x" \
    "keep-alive: 3 users / 1 user, req/s|keep-alive/gateway-3u|keep-alive/gateway-1u|0|>= 1.0x" \
    "keep-alive: $many users / 1 user, req/s|keep-alive/gateway-${many}u|keep-alive/gateway-1u|0|>= 0.8x" \
    "close: gateway / ssh -L, req/s|close/gateway-1u|close/ssh-L|0|>= 1.2x" \
    "close: gateway / nginx -> ssh -L, req/s|close/gateway-1u|close/nginx-ssh-L|0|" \
    "keep-alive: 1 connection x 32 / default, req/s|keep-alive/gateway-1c|keep-alive/gateway-1u|0|" \
    "keep-alive: 1 connection x 32 / default, p99|keep-alive/gateway-1c|keep-alive/gateway-1u|2|" \
    "keep-alive: 1 connection x 32 / default, cpu|keep-alive/gateway-1c|keep-alive/gateway-1u|5|" \
    "keep-alive: gateway TLS / plain, req/s|keep-alive/gateway-tls|keep-alive/gateway-1u|0|" \
    "close: gateway TLS / plain, req/s|close/gateway-tls|close/gateway-1u|0|"; do
    IFS='|' read -r label x y field target <<<"$spec"
    printf '  %-46s %-7s %s\n' "$label" "$(ratio "${figures[$x]}" "${figures[$y]}" "$field")" \
      "${target:+(target $target)}"
  done
  echo "csv: $csv"
  return "$status"
}
