# Sourced by benchmarks/run.sh, whose settings, helpers and variables it uses: the forward
# scenario (and its --baseline form): the engine, the facade and forward_async against ssh -L,
# ssh -N -L, nginx and the original's Node stack; the users sweep.
# shellcheck shell=bash disable=SC2154

# start_node_peer: the original module's stack (Node's http + the ssh2 package, a forwardOut
# channel per request: benchmarks/peers/ssh2-forward.js) in front of nginx; sets node_port,
# or leaves it empty when this is a smoke run or Node.js/npm are missing. npm fetches ssh2
# from the registry into this run's temp dir; nothing is installed in the tree.
start_node_peer() {
  local fd line
  node_port=""
  if ((smoke)) || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "== node-ssh2 reference skipped (smoke run, or no Node.js and npm here)"
    return 0
  fi
  mkdir -p "$work/peers"
  cp "$root/benchmarks/peers/package.json" "$root/benchmarks/peers/ssh2-forward.js" \
    "$work/peers/"
  if ! (cd "$work/peers" && timeout 300 npm install --no-audit --no-fund >"$work/npm.log" 2>&1); then
    echo "== node-ssh2 reference skipped: npm install failed:"
    tail -n 5 "$work/npm.log"
    return 0
  fi
  exec {fd}< <(exec node "$work/peers/ssh2-forward.js" "$SSHD_PORT" "$SSHD_USER" \
    "$SSHD_IDENTITY" "$SSHD_KNOWN_HOSTS" "$nginx_port" 2>"$work/node-ssh2.log")
  pids+=($!)
  if read -r -t 30 line <&"$fd" && [[ $line == "listening "* ]]; then
    node_port=${line#listening }
  else
    echo "== node-ssh2 reference skipped: the peer did not start:"
    tail -n 5 "$work/node-ssh2.log"
  fi
}

# Keeps the median-round table, the reading of sshd's CPU share, the engine's channels and the
# failures of sshpool-bench's report.
only_medians() {
  awk '/^median round/ || /^sshd.s CPU share/ { on = 1 } /^ratios/ || /^csv:/ { on = 0 }
    on || /^!!!/ || /channels open per/'
}

# print_before_after KEY VALUE... -- CSV_BEFORE CSV_AFTER: per KEY column value, the median of
# each VALUE column over the rows of each file, and after / before.
print_before_after() {
  local key=$1
  shift
  local values=()
  while [[ $1 != -- ]]; do
    values+=("$1")
    shift
  done
  shift
  awk -F, -v key="$key" -v values="${values[*]}" -v sha="$baseline_sha" '
    FNR == 1 { side = (NR == 1) ? "before" : "after"; delete c
      for (i = 1; i <= NF; ++i) c[$i] = i; next }
    { line = $0; k = ""
      # Quoted fields (case names with commas) are joined back into one.
      n = split(line, f, ","); m = 0; q = ""
      for (i = 1; i <= n; ++i) {
        if (q != "") { q = q "," f[i]; if (f[i] ~ /"$/) { g[++m] = q; q = "" } }
        else if (f[i] ~ /^"/ && f[i] !~ /"$/) q = f[i]
        else g[++m] = f[i]
      }
      k = g[c[key]]; gsub(/"/, "", k)
      if (!(k in seen)) { seen[k] = 1; order[++keys] = k }
      nv = split(values, vs, " ")
      for (v = 1; v <= nv; ++v) if (g[c[vs[v]]] != "") {
        id = side SUBSEP k SUBSEP vs[v]; val[id, ++cnt[id]] = g[c[vs[v]]] + 0 }
    }
    function median(id,   i, j, t, a, n) {
      n = cnt[id]; if (n == 0) return ""
      for (i = 1; i <= n; ++i) a[i] = val[id, i]
      for (i = 2; i <= n; ++i) for (j = i; j > 1 && a[j - 1] > a[j]; --j) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
      nv = split(values, vs, " ")
      printf "  before: %s, after: this tree; medians of the alternating runs\n", sha
      printf "  %-36s", key; for (v = 1; v <= nv; ++v) printf " %14s %14s %8s", vs[v] " before", "after", "ratio"
      printf "\n"
      for (i = 1; i <= keys; ++i) {
        printf "  %-36s", order[i]
        for (v = 1; v <= nv; ++v) {
          b = median("before" SUBSEP order[i] SUBSEP vs[v]); a = median("after" SUBSEP order[i] SUBSEP vs[v])
          printf " %14s %14s %8s", b, a, (b > 0 && a != "") ? sprintf("%.2fx", a / b) : "-"
        }
        printf "\n"
      }
    }' "$1" "$2"
}

# forward with --baseline: ssh -L (exec'd), the engine and the facade, 1 user, 32 in flight,
# REV's sshpool-bench and this tree's alternately, --turns times each.
scenario_forward_vs_baseline() {
  local before=$results/forward-before-$baseline_sha-$stamp.csv
  local after=$results/forward-after-$stamp.csv sizing turn bin out
  local -a eargs
  start_sshd forward || return 1
  start_nginx forward || return 1
  start_tunnel ssh-L-exec exec || return 1
  mapfile -t eargs < <(engine_args)
  sizing=(--duration "$duration" --rounds 1)
  ((smoke == 0)) || sizing=(--duration 1 --rounds 1 --max-requests 5000)
  for ((turn = 1; turn <= 2 * turns; turn++)); do
    if ((turn % 2)); then bin=$baseline_build/benchmarks/sshpool-bench out=$before; else
      bin=$bench out=$after
    fi
    echo "== forward, run $(((turn + 1) / 2))/$turns of $([[ $out == "$before" ]] && echo "the baseline $baseline_sha" || echo "this tree")"
    "$bin" "${sizing[@]}" --paths ssh-L-exec,engine,engine-facade --ssh-exec-port "$tunnel_port" \
      --direct-port "$nginx_port" "${eargs[@]}" --body-bytes "$body_bytes" --csv "$out" |
      only_medians || return 1
  done
  echo
  echo "forward: before / after (req/s and p99 of each path; ssh-L-exec shows the machine's drift)"
  print_before_after path req_per_s p99_ms -- "$before" "$after" || return 1
  echo "csv: $before $after"
}

scenario_forward() {
  if [[ -n $baseline ]]; then
    scenario_forward_vs_baseline
    return
  fi
  local csv=$results/forward-$stamp.csv cdf=$results/forward-cdf-$stamp.csv users sizing
  local -a eargs
  start_sshd forward || return 1
  start_nginx forward || return 1
  start_tunnel ssh-N-L noexec || return 1
  local ssh_n_port=$tunnel_port
  start_tunnel ssh-L-exec exec || return 1
  local ssh_exec_port=$tunnel_port node_port
  local -a node_args=()
  start_node_peer
  [[ -z $node_port ]] ||
    node_args=(--paths direct,ssh-N-L,ssh-L-exec,engine,engine-facade,engine-async,node-ssh2
      --node-ssh2-port "$node_port")
  mapfile -t eargs < <(engine_args)
  if ((smoke)); then
    sizing=(--duration 1 --rounds 1 --max-requests 5000)
    users=(10)
  else
    sizing=(--duration "$duration")
    users=(10 100 1000)
  fi
  echo "== $(ssh -V 2>&1), $(nginx -v 2>&1 | sed 's/^nginx version: //'), libssh" \
    "$(dpkg-query -W -f='${Version}' libssh-4 2>/dev/null || echo '?'), sshd on port" \
    "$SSHD_PORT, nginx on $nginx_port, ssh -N -L on $ssh_n_port, ssh -L (exec'd) on" \
    "$ssh_exec_port"
  "$bench" "${sizing[@]}" --direct-port "$nginx_port" --ssh-n-port "$ssh_n_port" \
    --ssh-exec-port "$ssh_exec_port" "${eargs[@]}" --sshd-pid "$SSHD_PID" \
    --body-bytes "$body_bytes" --csv "$csv" --cdf "$cdf" "${node_args[@]}" "${extra[@]}" ||
    return 1
  # One `ssh -L` (exec'd) per user as the reference for many users; the client's 32
  # connections can use at most 32 of them.
  local tunnels=() n k
  for ((k = 0; k < 32 && k < users[-1]; ++k)); do
    start_tunnel "ssh-L-exec-$k" exec || return 1
    tunnels+=("$tunnel_port")
  done
  for n in "${users[@]}"; do
    k=$((n < ${#tunnels[@]} ? n : ${#tunnels[@]}))
    echo
    echo "== forward: the engine (actor interface) at $n users, and $k ssh -L (exec'd) tunnels"
    "$bench" "${sizing[@]}" --paths ssh-L-exec,engine --users "$n" \
      --ssh-exec-port "$(IFS=,; echo "${tunnels[*]:0:k}")" --direct-port "$nginx_port" \
      "${eargs[@]}" --sshd-pid "$SSHD_PID" --body-bytes "$body_bytes" --csv "$csv" |
      only_medians || return 1
  done
  echo
  echo "== forward: channel reuse off (Connection: close on every request: a channel each)"
  "$bench" "${sizing[@]}" --paths ssh-L-exec,engine --channel-reuse off \
    --ssh-exec-port "$ssh_exec_port" --direct-port "$nginx_port" "${eargs[@]}" \
    --sshd-pid "$SSHD_PID" --body-bytes "$body_bytes" --csv "$csv" | only_medians || return 1
  echo
  echo "forward: engine (actor interface) against ssh -L (exec'd; one tunnel per user, at most"
  echo "32), median rounds, by users and channel reuse"
  awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) col[$i] = i; next }
    $col["median_round"] == 1 && ($col["path"] == "engine" || $col["path"] == "ssh-L-exec") {
      key = $col["users"] " " $col["channel_reuse"]
      if (!(key in seen)) { seen[key] = 1; order[++n] = key }
      rps[key, $col["path"]] = $col["req_per_s"]; p99[key, $col["path"]] = $col["p99_ms"]
      tunnels[key] = $col["ssh_exec_tunnels"]
      if ($col["path"] == "engine") {
        channels[key] = $col["channels_mean"]; cpu[key] = $col["cpu_us_per_req"]
        sshd[key] = $col["sshd_cpu_pct"]
      }
    }
    function ratio(x, y) { return y > 0 ? sprintf("%.2fx", x / y) : "-" }
    END {
      printf "  %-6s %-6s %10s %8s %8s %8s %7s  %8s %10s %8s  %-12s %-12s %s\n", "users",
        "reuse", "engine", "p99 ms", "ch/conn", "us/req", "sshd %", "tunnels", "ssh -L", "p99 ms",
        "engine/ssh", "p99 ratio", "engine vs 10 users"
      for (i = 1; i <= n; ++i) {
        k = order[i]; split(k, u, " ")
        e = rps[k, "engine"]; s = rps[k, "ssh-L-exec"]
        vs10 = (u[2] == "on" && u[1] != 10) ? ratio(e, rps["10 on", "engine"]) : ""
        printf "  %-6s %-6s %10d %8.2f %8s %8s %7s  %8s %10d %8.2f  %-12s %-12s %s\n", u[1],
          u[2], e, p99[k, "engine"], channels[k], cpu[k] == "" ? "-" : sprintf("%.1f", cpu[k]),
          sshd[k] == "" ? "-" : sprintf("%.0f", sshd[k]), tunnels[k], s, p99[k, "ssh-L-exec"],
          ratio(e, s), ratio(p99[k, "engine"], p99[k, "ssh-L-exec"]), vs10
      }
      print "  ch/conn: channels open per engine connection at the end (mean); ssh -L opens one"
      print "  per client connection, here 32 / tunnels; us/req: the CPU of the bench process"
      print "  per request (driver and engine in-process); sshd %: the sshd processes, % of a core"
      print "  targets: engine/ssh -L >= 1.0x, p99 ratio <= 1.0x; 1000 users >= 0.80x of 10 users"
    }' "$csv"
  echo "csv: $csv"
}
