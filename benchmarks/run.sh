#!/usr/bin/env bash
# The benchmark scenarios end to end on a Debian machine: installs what is missing (nginx,
# wrk, gnuplot), builds sshpool-bench, sshpool-bench-engine and sshpool-demo (Release), and
# runs each scenario named (default: all, in this order) against its own private sshd and
# nginx on 127.0.0.1, stopping everything it started on exit:
#   forward     nginx directly, OpenSSH `ssh -N -L`, `ssh -L` with an exec'd session and the
#               engine (actor interface, facade, async facade), interleaved (benchmarks/bench.cpp),
#               plus the original's stack (Node + ssh2, benchmarks/peers/) where Node.js and
#               npm are installed (not in --smoke); then the engine at 10, 100 and 1000
#               users, and with channel reuse off
#   gateway     under the same `wrk -t2 -c32 --latency` load, keep-alive and with `Connection:
#               close`: `ssh -L` (exec'd), nginx as a keep-alive reverse proxy to an `ssh -L`
#               (benchmarks/nginx-proxy.conf.in) and sshpool-demo with 1, 3 and 100 users
#               round robin; CPU per request of each path's own processes and sshd's share of
#               a core (forward reports both for the engine too)
#   reverse     reverse mode: the engine (sshpool-bench's engine-agent path) through one
#               `ssh -N -R` agent dialed in to its agent listener, versus the OpenSSH
#               equivalent (the same `ssh -N -R` to the scenario's sshd, the bench's client
#               against the port sshd then listens on: path ssh-R) and versus dial mode (path
#               engine, the same nginx through the sshd), interleaved, 32 in flight; then
#               sshpool-demo with an agent user against ssh -R under the same `wrk --latency`
#   slow-clients  a normal client's latency through sshpool-demo (wrk, a new connection per
#               request) alone, while 2,000 connections drip a head byte every 3 s, and while
#               5,000 idle connections are held
#   cold-start  1,000 users' first requests at once against an sshd with OpenSSH's default
#               MaxStartups (10:30:100), with the engine's default handshake settings and
#               with 8 connector threads and no rate cap
#   footprint   1,000 idle connections held: RSS per connection and threads
#   pool-ops    lease + release pairs without I/O (facade, actor interface) vs bare CAF
#   bulk        100 MiB through one channel (aes128-gcm) vs `ssh -c aes128-gcm -L` and direct;
#               8 x 10 MiB at once over one engine connection and over three vs ssh -L
# --baseline REV compares this tree with another revision in the same run: REV's benchmark
# programs are built once (Release, into build-bench-<sha>/ from `git archive`), and forward
# and pool-ops then alternate REV's programs and this tree's against the same sshd and nginx,
# --turns N times each (default 3), and print the medians before and after with their ratio
# (no other scenario takes it).
# Each prints a live progress line on stderr (on a terminal) and a table with its reference
# from the same run and the ratio; results go to benchmarks/results/<scenario>-<date>.csv,
# plots (gnuplot) to benchmarks/results/*-<date>.png. --smoke runs every scenario with tiny
# counts in seconds (CI) and writes into a temp dir instead.
#
# usage: benchmarks/run.sh [--duration SECONDS] [--smoke] [--baseline REV [--turns N]] [scenario...]
#                          [-- sshpool-bench options]
#   e.g. benchmarks/run.sh forward -- --connections 3 --channels 11 --paths ssh-N-L,engine
#        benchmarks/run.sh --baseline cb83475 forward pool-ops
# SSHPOOL_BENCH_BUILD_DIR overrides the build directory (default: build-bench/, apart from
# the tests' build/ so neither rebuilds the other), SSHPOOL_BENCH_BUILD_TYPE the build type
# (default: Release).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SSHPOOL_BENCH_BUILD_DIR:-$root/build-bench}
all_scenarios=(forward gateway reverse slow-clients cold-start footprint pool-ops bulk)
duration=10
smoke=0
baseline=""
turns=3
scenarios=()
extra=()
while (($# > 0)); do
  case $1 in
  --duration)
    duration=${2:-}
    if [[ ! $duration =~ ^[0-9]+([.][0-9]+)?$ ]]; then
      echo "run.sh: --duration wants seconds, not '$duration'" >&2
      exit 2
    fi
    shift 2
    ;;
  --smoke)
    smoke=1
    shift
    ;;
  --baseline)
    baseline=${2:-}
    if ! git -C "$root" rev-parse -q --verify "$baseline^{commit}" >/dev/null; then
      echo "run.sh: --baseline wants a revision of this repository, not '$baseline'" >&2
      exit 2
    fi
    shift 2
    ;;
  --turns)
    turns=${2:-}
    if [[ ! $turns =~ ^[1-9][0-9]?$ ]]; then
      echo "run.sh: --turns wants a count from 1 to 99, not '$turns'" >&2
      exit 2
    fi
    shift 2
    ;;
  --)
    shift
    extra=("$@")
    break
    ;;
  -h | --help)
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
    exit 0
    ;;
  -*)
    echo "run.sh: unknown argument '$1' (see --help)" >&2
    exit 2
    ;;
  *)
    if [[ " ${all_scenarios[*]} " != *" $1 "* ]]; then
      echo "run.sh: unknown scenario '$1' (one of: ${all_scenarios[*]})" >&2
      exit 2
    fi
    scenarios+=("$1")
    shift
    ;;
  esac
done
((${#scenarios[@]} > 0)) || scenarios=("${all_scenarios[@]}")
if [[ -n $baseline ]]; then
  for scenario in "${scenarios[@]}"; do
    if [[ $scenario != forward && $scenario != pool-ops ]]; then
      echo "run.sh: --baseline compares forward and pool-ops only, not '$scenario'" >&2
      exit 2
    fi
  done
fi

"$root/app/install-deps.sh" nginx-light wrk gnuplot-nox
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE="${SSHPOOL_BENCH_BUILD_TYPE:-Release}" \
  -DSSHPOOL_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" --target sshpool-bench sshpool-bench-engine sshpool-bench-slow sshpool-demo \
  -j "$(nproc)"
bench=$build/benchmarks/sshpool-bench
bench_engine=$build/benchmarks/sshpool-bench-engine
bench_slow=$build/benchmarks/sshpool-bench-slow
demo=$build/app/sshpool-demo
if [[ -n $baseline ]]; then
  baseline_sha=$(git -C "$root" rev-parse --short=10 "$baseline^{commit}")
  baseline_build=$root/build-bench-$baseline_sha
  if [[ ! -x $baseline_build/benchmarks/sshpool-bench ||
    ! -x $baseline_build/benchmarks/sshpool-bench-engine ]]; then
    echo "== building the baseline $baseline_sha into $baseline_build"
    rm -rf "$baseline_build/src"
    mkdir -p "$baseline_build/src"
    git -C "$root" archive "$baseline_sha" | tar -x -C "$baseline_build/src"
    cmake -S "$baseline_build/src" -B "$baseline_build" -DCMAKE_BUILD_TYPE=Release \
      -DSSHPOOL_BUILD_BENCHMARKS=ON >/dev/null
    cmake --build "$baseline_build" --target sshpool-bench sshpool-bench-engine -j "$(nproc)"
  fi
fi
# A thousand connections: the engine holds one socket each, sshd two processes each.
ulimit -n "$(ulimit -Hn)"

# shellcheck source=app/sshd-env.sh
source "$root/app/sshd-env.sh"
# Every engine connection execs a no-op (server_nodelay), which sshd runs through the user's
# login shell; bash reads ~/.bashrc for sshd sessions unless SHLVL says it is nested. A heavy
# ~/.bashrc (here root's runs `pyenv init`: 0.13 s, and concurrent rehashes queue on pyenv's
# lock) would otherwise dominate every handshake and cold start measured.
export SSHPOOL_SSHD_EXTRA_CONFIG="SetEnv SHLVL=1"

work=$(mktemp -d "${TMPDIR:-/tmp}/sshpool-bench.XXXXXX")
stamp=$(date -u +%Y-%m-%d-%H%M%S)
if ((smoke)); then
  results=$work/results
else
  results=$root/benchmarks/results
fi
mkdir -p "$results"
pids=()

# Stops the scenario's sshd (first: its tree holds the exec'd `sleep`, which would outlive
# the ssh client) and every other process it started.
stop_processes() {
  sshpool_sshd_stop
  if ((${#pids[@]} > 0)); then
    _sshpool_terminate "${pids[@]}"
    for pid in "${pids[@]}"; do
      wait "$pid" 2>/dev/null || true
    done
  fi
  pids=()
}

# shellcheck disable=SC2317  # only reached through the trap below
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_processes
  if ((status != 0)); then
    for log in "$work"/*/error.log "$work"/*/*.out "$work"/*.log "$work"/*/sshd.log; do
      if [[ -s $log ]]; then
        echo "--- tail of $log" >&2
        tail -n 15 "$log" >&2
      fi
    done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints a port of 127.0.0.1 that nothing listens on, below the ephemeral range when there is
# room (thousands of outgoing connections would otherwise take the chosen port first).
free_port() {
  local port attempt low=32768
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  ((low > 12000)) || low=61000
  for attempt in {1..50}; do
    port=$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
    if _sshpool_port_free "$port"; then
      echo "$port"
      return 0
    fi
  done
  echo "run.sh: no free port found in $attempt attempts" >&2
  return 1
}

# wait_accepting PORT PID NAME: waits up to 10 s until 127.0.0.1:PORT accepts a connection
# while process PID lives.
wait_accepting() {
  local port=$1 pid=$2 name=$3 deadline=$((SECONDS + 10))
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run.sh: $name exited before accepting on port $port" >&2
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "run.sh: $name does not accept on port $port after 10 s" >&2
      return 1
    fi
    sleep 0.05
  done
}

# start_sshd NAME [MAXSTARTUPS]: a private sshd for one scenario (see app/sshd-env.sh).
start_sshd() {
  sshpool_sshd_start "$work/$1-sshd" "${2:-}"
}

# launch_nginx DIR TEMPLATE [sed options...]: nginx in DIR, its configuration
# benchmarks/TEMPLATE with @DIR@ and @PORT@ (a free port) filled in and the sed options
# applied; sets launched_port.
launch_nginx() {
  local dir=$1 template=$2
  shift 2
  mkdir -p "$dir"
  launched_port=$(free_port)
  sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$launched_port|g" "$@" "$root/benchmarks/$template" \
    >"$dir/nginx.conf"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" </dev/null >"$dir/nginx.out" 2>&1 &
  pids+=($!)
  wait_accepting "$launched_port" "${pids[-1]}" nginx
}

# start_nginx NAME [FILE_BYTES]: nginx answering a 100-byte body on / and serving
# /files/bulk (FILE_BYTES random bytes, if given); sets nginx_port.
body_bytes=100
start_nginx() {
  local dir=$work/$1-nginx body launched_port
  body=$(printf '%*s' "$body_bytes" '' | tr ' ' x)
  mkdir -p "$dir/files"
  if [[ -n ${2:-} ]]; then
    head -c "$2" /dev/urandom >"$dir/files/bulk"
  fi
  # nginx's worker runs as another user when started as root: let it reach the files.
  chmod 0711 "$work"
  chmod -R a+rX "$dir/files"
  launch_nginx "$dir" nginx.conf.in -e "s|@BODY@|$body|g" || return 1
  nginx_port=$launched_port
}

ssh_opts() {
  printf '%s\n' -F /dev/null -o BatchMode=yes -o "UserKnownHostsFile=$SSHD_KNOWN_HOSTS" \
    -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o ExitOnForwardFailure=yes \
    -i "$SSHD_IDENTITY" -p "$SSHD_PORT"
}

# start_tunnel NAME exec|noexec [ssh options...]: an OpenSSH `ssh -L` to nginx, whose
# session execs `sleep` (sshd then sets TCP_NODELAY) or not (-N); sets tunnel_port.
start_tunnel() {
  local name=$1 mode=$2 opts
  shift 2
  mapfile -t opts < <(ssh_opts)
  tunnel_port=$(free_port)
  if [[ $mode == exec ]]; then
    ssh "${opts[@]}" "$@" -n -L "127.0.0.1:$tunnel_port:127.0.0.1:$nginx_port" \
      "$SSHD_USER@127.0.0.1" sleep 100000 >"$work/$name.log" 2>&1 &
  else
    ssh "${opts[@]}" "$@" -n -N -L "127.0.0.1:$tunnel_port:127.0.0.1:$nginx_port" \
      "$SSHD_USER@127.0.0.1" >"$work/$name.log" 2>&1 &
  fi
  pids+=($!)
  wait_accepting "$tunnel_port" "${pids[-1]}" "$name"
}

engine_args() {
  printf '%s\n' --sshd-port "$SSHD_PORT" --sshd-user "$SSHD_USER" --identity "$SSHD_IDENTITY" \
    --known-hosts "$SSHD_KNOWN_HOSTS"
}

# -- forward --------------------------------------------------------------------------------

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

# -- gateway --------------------------------------------------------------------------------

# run_wrk PORT [wrk args...]: runs wrk (its output into $work/wrk.out) while a live line
# shows the elapsed time; prints "req_per_s p50_ms p99_ms errors".
run_wrk() {
  local port=$1 pid start=$SECONDS
  shift
  wrk --latency "$@" -s "$root/benchmarks/wrk-users.lua" "http://127.0.0.1:$port/" \
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
  awk 'function to_ms(v) {
      if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000
      return v + 0
    }
    $1 == "Requests/sec:" { rps = $2 }
    $1 == "50%" { p50 = to_ms($2) }
    $1 == "99%" { p99 = to_ms($2) }
    /Non-2xx or 3xx responses:/ { errors += $NF }
    /Socket errors:/ { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
    END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, errors }' "$work/wrk.out"
}

# start_gateway USER...: starts sshpool-demo with USERs on the scenario's sshd, each forwarding
# to its nginx; sets gw_port and gw_pid.
start_gateway() {
  local config=$work/gateway.json line fd entries="" u
  for u in "$@"; do
    entries+="${entries:+,}\"$u\": {\"host\": \"127.0.0.1\", \"port\": $SSHD_PORT,
      \"username\": \"$SSHD_USER\", \"identity_file\": \"$SSHD_IDENTITY\",
      \"known_hosts_file\": \"$SSHD_KNOWN_HOSTS\", \"target_host\": \"127.0.0.1\",
      \"target_port\": $nginx_port}"
  done
  printf '{"listen": "127.0.0.1:0", "log_level": "warn", "users": {%s}}\n' "$entries" \
    >"$config"
  exec {fd}< <(exec setsid "$demo" --config "$config" 2>"$work/sshpool-demo.log")
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

# warm_up PORT: one second of `wrk -t1 -c32` on PORT (users: $WRK_USERS), answers unchecked.
warm_up() {
  wrk -t1 -c32 -d1s --timeout 10s -s "$root/benchmarks/wrk-users.lua" "http://127.0.0.1:$1/" \
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
# holding every user, requests round robin over 1, 3 and 100 users (--smoke: 5). Each path's
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
  start_gateway "${users[@]}" || return 1
  echo "== gateway: sshpool-demo on :$gw_port ($many users g0..g$((many - 1)), default pool" \
    "settings, requests round robin by /u/USER/), ssh -L (exec'd) on :$ssh_port, nginx ->" \
    "ssh -L on :$proxy_port, nginx on :$nginx_port; wrk ${wrk_args[*]}"
  # Warm-up: every user's first connection (at the gateway's handshake rate, 100/s by
  # default) until each user has a pool and there are as many connections as users; the
  # first user's and the first three's connections at 32 in flight; the proxy's upstream
  # connections and the tunnels' channels.
  local deadline=$((SECONDS + 60)) warm
  export WRK_USERS="${users[*]}"
  until (($(gateway_metric sshpool_pool_users) >= many &&
    $(gateway_metric sshpool_ssh_connections_opened_total) >= many)); do
    if ((SECONDS >= deadline)); then
      echo "run.sh: sshpool-demo did not connect its $many users within 60 s" >&2
      return 1
    fi
    warm_up "$gw_port"
  done
  for warm in "g0" "g0 g1 g2"; do
    WRK_USERS=$warm warm_up "$gw_port"
  done
  warm_up "$proxy_port"
  warm_up "$ssh_port"
  local header=date,mode,path,users,wrk,req_per_s,p50_ms,p99_ms,errors,requests,cpu_us_per_req
  [[ -s $csv ]] || echo "$header,cpu_of,sshd_cpu_pct" >"$csv"
  local mode path port n cpu_pids cpu_of result status=0
  local -a paths=(ssh-L nginx-ssh-L gateway-1u gateway-3u "gateway-${many}u")
  declare -A figures
  for mode in keep-alive close; do
    local hdr=()
    [[ $mode == keep-alive ]] || hdr=(-H 'Connection: close')
    for path in "${paths[@]}"; do
      n=""
      case $path in
      ssh-L) port=$ssh_port cpu_pids=$ssh_pid cpu_of="ssh" ;;
      nginx-ssh-L) port=$proxy_port cpu_pids="$proxy_pid $proxy_ssh_pid" cpu_of="nginx+ssh" ;;
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
    "close: gateway / nginx -> ssh -L, req/s|close/gateway-1u|close/nginx-ssh-L|0|"; do
    IFS='|' read -r label x y field target <<<"$spec"
    printf '  %-46s %-7s %s\n' "$label" "$(ratio "${figures[$x]}" "${figures[$y]}" "$field")" \
      "${target:+(target $target)}"
  done
  echo "csv: $csv"
  return "$status"
}

# -- reverse -------------------------------------------------------------------------------

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

# -- slow-clients ----------------------------------------------------------------------------

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

# -- cold-start, footprint, pool-ops, bulk (sshpool-bench-engine) --------------------------

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
  local csv=$results/bulk-$stamp.csv bytes=$((100 << 20)) rounds=3 cipher=aes128-gcm@openssh.com
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

# -- plots ----------------------------------------------------------------------------------

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

failed=()
for scenario in "${scenarios[@]}"; do
  echo
  echo "######## $scenario"
  status=0
  "scenario_${scenario//-/_}" || status=$?
  stop_processes
  if ((status != 0)); then
    echo "!!! scenario $scenario FAILED (status $status)"
    failed+=("$scenario")
  fi
done
make_plots
echo "== benchmark took ${SECONDS} s in total (setup included); results in $results"
if ((${#failed[@]} > 0)); then
  echo "!!! failed scenarios: ${failed[*]}"
  exit 1
fi
