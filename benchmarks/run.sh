#!/usr/bin/env bash
# The forwarding benchmark end to end on a Debian machine: installs what is missing, builds
# sshpool-bench (Release), starts on 127.0.0.1 a private sshd, an nginx answering a 100-byte
# body, an OpenSSH `ssh -N -L` tunnel and an `ssh -L` tunnel whose session exec'd a command
# (so sshd sets TCP_NODELAY), then measures nginx directly, both tunnels and the sshpool
# engine in one interleaved run (see benchmarks/bench.cpp). Everything it started is stopped
# on exit. Results go to stdout and to benchmarks/results/forward-<date>.csv (meant to be
# committed); --smoke runs ~1 s per path with tiny counts (CI) and writes its CSV to a temp
# dir instead.
#
# usage: benchmarks/run.sh [--duration SECONDS] [--smoke] [-- sshpool-bench options...]
#   e.g. benchmarks/run.sh -- --connections 3 --channels 11 --paths ssh-N-L,engine
# SSHPOOL_BENCH_BUILD_DIR overrides the build directory (default: build-bench/, apart from
# the tests' build/ so neither rebuilds the other), SSHPOOL_BENCH_BUILD_TYPE the build type
# (default: Release).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SSHPOOL_BENCH_BUILD_DIR:-$root/build-bench}
duration=10
smoke=0
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
  --)
    shift
    extra=("$@")
    break
    ;;
  -h | --help)
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
    exit 0
    ;;
  *)
    echo "run.sh: unknown argument '$1' (see --help)" >&2
    exit 2
    ;;
  esac
done

"$root/app/install-deps.sh" nginx-light
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE="${SSHPOOL_BENCH_BUILD_TYPE:-Release}" \
  -DSSHPOOL_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" --target sshpool-bench -j "$(nproc)"
bench=$build/benchmarks/sshpool-bench

# shellcheck source=app/sshd-env.sh
source "$root/app/sshd-env.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/sshpool-bench.XXXXXX")
pids=()
# shellcheck disable=SC2317  # only reached through the trap below
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # sshd first: its tree still holds the exec'd `sleep`, which would outlive the ssh client.
  sshpool_sshd_stop
  if ((${#pids[@]} > 0)); then
    _sshpool_terminate "${pids[@]}"
    for pid in "${pids[@]}"; do
      wait "$pid" 2>/dev/null || true
    done
  fi
  if ((status != 0)); then
    for log in "$work"/nginx/error.log "$work"/nginx/nginx.out "$work"/ssh-*.log "$work"/sshd/sshd.log; do
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

# Prints a port of 127.0.0.1 that nothing listens on.
free_port() {
  local port attempt
  for attempt in {1..50}; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
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

sshpool_sshd_start "$work/sshd"

body_bytes=100
body=$(printf '%*s' "$body_bytes" '' | tr ' ' x)
mkdir -p "$work/nginx"
nginx_port=$(free_port)
sed -e "s|@DIR@|$work/nginx|g" -e "s|@PORT@|$nginx_port|g" -e "s|@BODY@|$body|g" \
  "$root/benchmarks/nginx.conf.in" >"$work/nginx/nginx.conf"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" </dev/null \
  >"$work/nginx/nginx.out" 2>&1 &
pids+=($!)
wait_accepting "$nginx_port" "${pids[-1]}" nginx

ssh_opts=(-F /dev/null -o BatchMode=yes -o "UserKnownHostsFile=$SSHD_KNOWN_HOSTS"
  -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o ExitOnForwardFailure=yes
  -i "$SSHD_IDENTITY" -p "$SSHD_PORT")
ssh_n_port=$(free_port)
ssh "${ssh_opts[@]}" -n -N -L "127.0.0.1:$ssh_n_port:127.0.0.1:$nginx_port" \
  "$SSHD_USER@127.0.0.1" >"$work/ssh-N-L.log" 2>&1 &
pids+=($!)
wait_accepting "$ssh_n_port" "${pids[-1]}" "ssh -N -L"
ssh_exec_port=$(free_port)
ssh "${ssh_opts[@]}" -n -L "127.0.0.1:$ssh_exec_port:127.0.0.1:$nginx_port" \
  "$SSHD_USER@127.0.0.1" sleep 100000 >"$work/ssh-L-exec.log" 2>&1 &
pids+=($!)
wait_accepting "$ssh_exec_port" "${pids[-1]}" "ssh -L (exec'd)"

if ((smoke)); then
  csv=$work/forward-smoke.csv
  sizing=(--duration 1 --rounds 1 --max-requests 5000)
else
  mkdir -p "$root/benchmarks/results"
  csv=$root/benchmarks/results/forward-$(date -u +%Y-%m-%d-%H%M%S).csv
  sizing=(--duration "$duration")
fi
echo "== $(ssh -V 2>&1), $(nginx -v 2>&1 | sed 's/^nginx version: //'), libssh" \
  "$(dpkg-query -W -f='${Version}' libssh-4 2>/dev/null || echo '?'), sshd on port $SSHD_PORT," \
  "nginx on $nginx_port, ssh -N -L on $ssh_n_port, ssh -L (exec'd) on $ssh_exec_port"
status=0
"$bench" "${sizing[@]}" --direct-port "$nginx_port" --ssh-n-port "$ssh_n_port" \
  --ssh-exec-port "$ssh_exec_port" --sshd-port "$SSHD_PORT" --sshd-user "$SSHD_USER" \
  --identity "$SSHD_IDENTITY" --known-hosts "$SSHD_KNOWN_HOSTS" --body-bytes "$body_bytes" \
  --csv "$csv" "${extra[@]}" || status=$?
echo "== benchmark took ${SECONDS} s in total (setup included)"
exit "$status"
