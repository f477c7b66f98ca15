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
#               8 x 10 MiB at once over one engine connection and over three vs ssh -L;
#               7 interleaved rounds (a round is ~0.15 s), medians
#   cluster     three sshpool-demo nodes of one cluster vs one alone, 100 users on each:
#               aggregate req/s and CPU per request, and a request entering at a non-owner
#               node vs at the user's owner (p50, p99, CPU: the remote hop's cost); on one
#               machine this measures the cluster's overhead, not its scale-out
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
all_scenarios=(forward gateway reverse slow-clients cold-start footprint pool-ops bulk cluster)
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

"$root/app/install-deps.sh" nginx-light wrk gnuplot-nox openssl jq
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

# The scenarios and the plots (each file defines functions only).
# shellcheck source=benchmarks/scenarios/forward.sh
source "$root/benchmarks/scenarios/forward.sh"
# shellcheck source=benchmarks/scenarios/gateway.sh
source "$root/benchmarks/scenarios/gateway.sh"
# shellcheck source=benchmarks/scenarios/reverse.sh
source "$root/benchmarks/scenarios/reverse.sh"
# shellcheck source=benchmarks/scenarios/slow_clients.sh
source "$root/benchmarks/scenarios/slow_clients.sh"
# shellcheck source=benchmarks/scenarios/cluster.sh
source "$root/benchmarks/scenarios/cluster.sh"
# shellcheck source=benchmarks/scenarios/engine.sh
source "$root/benchmarks/scenarios/engine.sh"
# shellcheck source=benchmarks/scenarios/plots.sh
source "$root/benchmarks/scenarios/plots.sh"

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
