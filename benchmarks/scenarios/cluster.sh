# Sourced by benchmarks/run.sh, whose settings, helpers and variables it uses (and those of
# scenarios/gateway.sh): the cluster scenario, three sshpool-demo nodes of one cluster against
# one sshpool-demo alone, the same 100 users on each, in the same run.
# shellcheck shell=bash disable=SC2154

# parallel_wrk PORT... : one `wrk -t1` per PORT at once ($cluster_wrk_args, users $WRK_USERS),
# measuring the CPU of the processes $cpu_pids over the run; prints "req_per_s p50_ms p99_ms
# errors requests cpu_us_per_req": the req/s and requests summed, p50 and p99 the worst of the
# runs (each wrk sees its own latencies only).
parallel_wrk() {
  local i=0 port c0 c1 hz
  local -a wrk_pids=()
  hz=$(getconf CLK_TCK)
  # shellcheck disable=SC2086  # a list of pids
  c0=$(cpu_ticks $cpu_pids)
  for port in "$@"; do
    wrk --latency "${cluster_wrk_args[@]}" -s "$root/benchmarks/wrk-users.lua" \
      "http://127.0.0.1:$port/" >"$work/wrk-$i.out" 2>&1 &
    wrk_pids+=($!)
    i=$((i + 1))
  done
  for port in "${wrk_pids[@]}"; do
    wait "$port" || return 1
  done
  # shellcheck disable=SC2086
  c1=$(cpu_ticks $cpu_pids)
  for ((i = 0; i < $#; ++i)); do
    echo "$(wrk_figures "$work/wrk-$i.out") $(awk '$2 == "requests" && $3 == "in" { print $1 }' \
      "$work/wrk-$i.out")"
  done | awk -v cpu=$((c1 - c0)) -v hz="$hz" '
    { rps += $1; if ($2 > p50) p50 = $2; if ($3 > p99) p99 = $3; errors += $4; requests += $5 }
    END {
      printf "%d %.3f %.3f %d %d %.1f\n", rps, p50, p99, errors, requests,
        requests ? cpu / hz * 1e6 / requests : 0
    }'
}

# metric_of PORT NAME: the value of sshpool-demo's metric NAME on PORT (0 if absent).
metric_of() {
  curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { v = $2 } END { print v + 0 }'
}

# The cluster scenario. Three nodes n1, n2, n3 (mutual TLS with a CA made here, heartbeats
# every 500 ms) and one gateway alone, each with the same 100 users (--smoke: 6) on the
# scenario's sshd and nginx; every user's connection is opened first (warm-up) on its owner
# (the cluster) and in the lone gateway. Then:
#   aggregate  three `wrk -t1` at once, all users round robin, one wrk per node of the
#              cluster, against the same three wrk on the lone gateway: req/s summed, and the
#              CPU of the serving processes (all nodes; the lone gateway) per request;
#   remote hop the users that n1 owns, entering at n1 (their owner) and at n2 (which hands
#              them to n1 over the cluster's TLS connection): p50 / p99 and the CPU of the
#              three nodes per request; the difference is what a request entering at a
#              non-owner costs.
# On one machine with 2 cores, three nodes share the cores that one node had: this measures
# the cluster's overhead, not its scale-out.
scenario_cluster() {
  local csv=$results/cluster-$stamp.csv many=100 status=0 dir=$work/cluster n k
  local -a users lat_args
  cluster_wrk_args=(-t1 -c11 "-d${duration%.*}s")
  lat_args=(-t1 -c8 "-d${duration%.*}s")
  if ((smoke)); then
    many=6
    cluster_wrk_args=(-t1 -c3 -d1s)
    lat_args=(-t1 -c2 -d1s)
  fi
  for ((k = 0; k < many; ++k)); do
    users+=("c$k")
  done
  start_sshd cluster || return 1
  start_nginx cluster || return 1
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=bench-cluster-ca -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null || return 1
  declare -A cport port pid
  for n in n1 n2 n3; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$n" \
      -keyout "$dir/$n.key" -out "$dir/$n.csr" 2>/dev/null || return 1
    openssl x509 -req -in "$dir/$n.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 1 -out "$dir/$n.pem" 2>/dev/null || return 1
    cport[$n]=$(free_port) || return 1
  done
  local gw_port gw_pid peers p
  for n in n1 n2 n3; do
    peers=""
    for p in n1 n2 n3; do
      [[ $p == "$n" ]] || peers+="${peers:+, }\"127.0.0.1:${cport[$p]}\""
    done
    gw_name=$n gw_extra="\"cluster\": {\"node_id\": \"$n\", \"listen\": \"127.0.0.1:${cport[$n]}\",
      \"peers\": [$peers], \"ca_file\": \"$dir/ca.pem\", \"cert_file\": \"$dir/$n.pem\",
      \"key_file\": \"$dir/$n.key\"}" start_gateway "${users[@]}" || return 1
    port[$n]=$gw_port pid[$n]=$gw_pid
  done
  gw_name=alone gw_extra="" start_gateway "${users[@]}" || return 1
  local alone_port=$gw_port alone_pid=$gw_pid
  local deadline=$((SECONDS + 30))
  for n in n1 n2 n3; do
    until (($(metric_of "${port[$n]}" sshpool_cluster_members) == 3)); do
      if ((SECONDS >= deadline)); then
        echo "run.sh: cluster node $n does not see 3 members within 30 s" >&2
        return 1
      fi
      sleep 0.1
    done
  done
  echo "== cluster: nodes n1 :${port[n1]}, n2 :${port[n2]}, n3 :${port[n3]} (cluster ports" \
    "${cport[n1]}, ${cport[n2]}, ${cport[n3]}) and a lone sshpool-demo on :$alone_port," \
    "$many users c0..c$((many - 1)) on each; wrk ${cluster_wrk_args[*]} per node"
  # Warm-up: every user's connection, on its owner node and in the lone gateway.
  export WRK_USERS="${users[*]}"
  deadline=$((SECONDS + 60))
  until (($(metric_of "${port[n1]}" sshpool_ssh_connections_opened_total) + $(metric_of \
    "${port[n2]}" sshpool_ssh_connections_opened_total) + $(metric_of "${port[n3]}" \
    sshpool_ssh_connections_opened_total) >= many && $(metric_of "$alone_port" \
    sshpool_ssh_connections_opened_total) >= many)); do
    if ((SECONDS >= deadline)); then
      echo "run.sh: the users' connections were not all open within 60 s" >&2
      return 1
    fi
    for p in "${port[n1]}" "${port[n2]}" "${port[n3]}" "$alone_port"; do
      warm_up "$p"
    done
  done
  # The users n1 owns: those with a connection there.
  local -a owned
  mapfile -t owned < <(curl -s "http://127.0.0.1:${port[n1]}/stats" |
    jq -r '.pool.per_user[] | select(.connections > 0) | .user')
  if ((${#owned[@]} == 0)); then
    echo "run.sh: n1 owns none of the $many users" >&2
    return 1
  fi
  local header=date,path,users,wrk,req_per_s,p50_ms,p99_ms,errors,requests,cpu_us_per_req
  [[ -s $csv ]] || echo "$header" >"$csv"
  declare -A figures
  local cpu_pids result path shown_users args
  local -a f
  cpu_pids="${pid[n1]} ${pid[n2]} ${pid[n3]}"
  result=$(parallel_wrk "${port[n1]}" "${port[n2]}" "${port[n3]}") || return 1
  figures[cluster-3-nodes]=$result
  cpu_pids=$alone_pid
  result=$(parallel_wrk "$alone_port" "$alone_port" "$alone_port") || return 1
  figures[alone-1-node]=$result
  cpu_pids="${pid[n1]} ${pid[n2]} ${pid[n3]}"
  export WRK_USERS="${owned[*]}"
  for path in owner-entry non-owner-entry; do
    p=${port[n1]}
    [[ $path == owner-entry ]] || p=${port[n2]}
    result=$(measure_wrk "$p" "$cpu_pids" "${lat_args[@]}") || return 1
    read -r -a f <<<"$result"
    figures[$path]="${f[*]:0:6}"
  done
  for path in cluster-3-nodes alone-1-node owner-entry non-owner-entry; do
    read -r -a f <<<"${figures[$path]}"
    shown_users=$many args="3x wrk ${cluster_wrk_args[*]}"
    if [[ $path == *entry ]]; then
      shown_users=${#owned[@]} args="wrk ${lat_args[*]}"
    fi
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ),$path,$shown_users,$args,$(
      IFS=,
      echo "${f[*]}"
    )" >>"$csv"
    ((f[3] == 0)) || status=1
  done
  echo
  echo "cluster (100-byte bodies; cpu us/req: user + system of the serving sshpool-demo" \
    "processes per request: the three nodes, or the lone one)"
  printf '  %-16s %6s %9s %8s %8s %7s %11s\n' path users "req/s" "p50 ms" "p99 ms" errors \
    "cpu us/req"
  for path in cluster-3-nodes alone-1-node owner-entry non-owner-entry; do
    read -r -a f <<<"${figures[$path]}"
    shown_users=$many
    [[ $path != *entry ]] || shown_users=${#owned[@]}
    printf '  %-16s %6s %9d %8.2f %8.2f %7d %11.1f\n' "$path" "$shown_users" "${f[0]}" "${f[1]}" \
      "${f[2]}" "${f[3]}" "${f[5]}"
  done
  local -a own non
  read -r -a own <<<"${figures[owner-entry]}"
  read -r -a non <<<"${figures[non-owner-entry]}"
  echo "ratios (2 cores shared by every node: the cluster's overhead, not its scale-out):"
  printf '  %-52s %s\n' "3 nodes / 1 node, aggregate req/s" \
    "$(ratio "${figures[cluster-3-nodes]}" "${figures[alone-1-node]}" 0)"
  printf '  %-52s %s\n' "3 nodes / 1 node, cpu us/req" \
    "$(ratio "${figures[cluster-3-nodes]}" "${figures[alone-1-node]}" 5)"
  printf '  %-52s %s (+%s ms)\n' "entering at a non-owner / at the owner, p50" \
    "$(ratio "${figures[non-owner-entry]}" "${figures[owner-entry]}" 1)" \
    "$(awk -v a="${non[1]}" -v b="${own[1]}" 'BEGIN { printf "%.3f", a - b }')"
  printf '  %-52s %s (+%s ms)\n' "entering at a non-owner / at the owner, p99" \
    "$(ratio "${figures[non-owner-entry]}" "${figures[owner-entry]}" 2)" \
    "$(awk -v a="${non[2]}" -v b="${own[2]}" 'BEGIN { printf "%.3f", a - b }')"
  printf '  %-52s %s (+%s us per request: the remote hop)\n' \
    "entering at a non-owner / at the owner, cpu us/req" \
    "$(ratio "${figures[non-owner-entry]}" "${figures[owner-entry]}" 5)" \
    "$(awk -v a="${non[5]}" -v b="${own[5]}" 'BEGIN { printf "%.1f", a - b }')"
  echo "csv: $csv"
  return "$status"
}
