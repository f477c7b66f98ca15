#!/usr/bin/env bash
# The demo end to end on a fresh Debian machine: installs what is missing, builds, then starts
# a private OpenSSH sshd on 127.0.0.1 (generated keys, own config, high port), two mock LLM
# services (sshpool-backend: Ollama-like GET /api/tags and streaming POST /api/chat, one
# token every 150 ms) and the gateway sshpool-demo for three users from a generated config
# file: alice and carol reach backend-a, bob reaches backend-b, each through SSH. It sends
# requests with curl (GET /api/tags for every user, routed by X-User-Id or /u/<user>/, and
# one streamed POST /api/chat whose tokens arrive one by one), prints /stats, then waits for
# Ctrl-C (on a terminal; otherwise it goes on at once) and sends SIGTERM to sshpool-demo,
# which drains and prints its shutdown report. Everything it started is stopped at the end.
#
# usage: app/demo.sh          (SSHPOOL_BUILD_DIR=dir to build elsewhere)
# Against real machines: build/app/sshpool-demo --config FILE (see sshpool-demo --help).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SSHPOOL_BUILD_DIR:-$root/build}
"$root/app/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target sshpool-demo sshpool-backend

# shellcheck source=app/sshd-env.sh
source "$root/app/sshd-env.sh"
work=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  sshpool_sshd_stop
  rm -rf "$work"
}
trap cleanup EXIT

# Every server runs in its own process group, so that a Ctrl-C meant for this script does
# not reach them: sshpool-demo must see only the SIGTERM sent below.
set -m
sshpool_sshd_start "$work/sshd" >/dev/null
set +m

# Starts a backend; sets REPLY to its port (read from its one "listening" line).
start_backend() {
  local fd line
  exec {fd}< <(exec setsid "$build/app/sshpool-backend" --name "$1" --token-delay-ms 150 \
    --tokens 10)
  pids+=($!)
  read -r -t 10 line <&"$fd"
  REPLY=${line##*:}
}
start_backend backend-a
port_a=$REPLY
start_backend backend-b
port_b=$REPLY

user_json() { # NAME TARGET_PORT
  cat <<EOF
    "$1": {"host": "127.0.0.1", "port": $SSHD_PORT, "username": "$SSHD_USER",
           "identity_file": "$SSHD_IDENTITY", "known_hosts_file": "$SSHD_KNOWN_HOSTS",
           "target_host": "127.0.0.1", "target_port": $2}
EOF
}
config=$work/sshpool-demo.json
cat >"$config" <<EOF
{
  "listen": "127.0.0.1:0",
  "log_level": "info",
  "max_connections_per_user": 2,
  "shutdown_grace_period": 10000,
  "users": {
$(user_json alice "$port_a"),
$(user_json bob "$port_b"),
$(user_json carol "$port_a")
  }
}
EOF

exec {gw}< <(exec setsid "$build/app/sshpool-demo" --config "$config" 2>"$work/sshpool-demo.log")
gw_pid=$!
pids+=("$gw_pid")
if ! read -r -t 30 line <&"$gw"; then
  echo "sshpool-demo did not start:" >&2
  cat "$work/sshpool-demo.log" >&2
  exit 1
fi
base=http://127.0.0.1:${line##*:}
echo "== sshd on 127.0.0.1:$SSHD_PORT; backend-a on :$port_a (alice, carol), backend-b on :$port_b (bob)"
echo "== $line (config: $config)"

echo
echo "== GET /api/tags for each user, through SSH"
for route in "alice header" "bob prefix" "carol header"; do
  read -r user how <<<"$route"
  if [[ $how == header ]]; then
    url=$base/api/tags args=(-H "X-User-Id: $user") shown="X-User-Id: $user"
  else
    url=$base/u/$user/api/tags args=() shown="/u/$user/api/tags"
  fi
  curl -sS -o "$work/body" -D "$work/head" "${args[@]}" "$url"
  status=$(head -n 1 "$work/head" | tr -d '\r')
  backend=$(grep -i '^x-backend:' "$work/head" | cut -d' ' -f2 | tr -d '\r')
  rid=$(grep -i '^x-request-id:' "$work/head" | cut -d' ' -f2 | tr -d '\r')
  printf '%-26s -> %s from %s (X-Request-Id %s)\n     %s...\n' "$shown" "$status" "$backend" \
    "$rid" "$(head -c 90 "$work/body")"
done

echo
echo "== POST /u/bob/api/chat streamed with curl -N: each token as it arrives"
start=$(date +%s%N)
curl -sS -N "$base/u/bob/api/chat" -H 'Content-Type: application/json' \
  -d '{"model":"demo-llm","messages":[{"role":"user","content":"Hello"}]}' |
  while IFS= read -r chunk; do
    ms=$((($(date +%s%N) - start) / 1000000))
    token=$(sed -n 's/.*"content":"\([^"]*\)".*/\1/p' <<<"$chunk")
    if [[ -n $token ]]; then
      printf '  +%5d ms  %s\n' "$ms" "$token"
    else
      printf '  +%5d ms  (end) %s\n' "$ms" "${chunk:0:90}"
    fi
  done

echo
echo "== error mapping: an unknown user"
curl -sS -w ' (HTTP %{http_code})\n' "$base/u/mallory/api/tags"

echo
echo "== /stats"
curl -sS "$base/stats"

if [[ -t 0 ]]; then
  echo
  echo "sshpool-demo is serving on $base, e.g."
  echo "  curl -N -H 'X-User-Id: carol' $base/api/chat -d '{}'"
  echo "  curl $base/metrics"
  echo "Press Ctrl-C to drain and stop it."
  interrupted=0
  trap 'interrupted=1' INT
  while ((interrupted == 0)); do
    sleep 3600 &
    wait $! 2>/dev/null || true
  done
  trap - INT
fi

echo
echo "== SIGTERM to sshpool-demo: it drains, prints its report and exits"
kill -TERM "$gw_pid"
while read -r -t 60 line <&"$gw"; do
  echo "$line"
done
echo
echo "== sshpool-demo's request log lines (stderr; info level, one per request)"
grep -E ' request |shutdown' "$work/sshpool-demo.log" | cut -c1-220 || true
