#!/usr/bin/env bash
# The demo end to end on a fresh Debian machine: installs what is missing, builds, then starts
# a private OpenSSH sshd on 127.0.0.1 (generated keys, own config, high port), two mock LLM
# services (sshpool-backend: Ollama-like GET /api/tags and streaming POST /api/chat, one
# token every 150 ms) and the gateway sshpool-demo for four users from a generated config
# file: alice and carol reach backend-a, bob reaches backend-b, each through SSH the gateway
# dials; dave's machine (behind NAT, say) runs backend-b too and dials in itself, in reverse
# mode: the stock OpenSSH client `ssh -N -R` against the gateway's agent listener, whose host
# key dave pins from what `sshpool-demo --check-config` shows. It sends requests with curl
# (GET /api/tags for every user, routed by X-User-Id or /u/<user>/, and streamed POST
# /api/chat for bob and dave whose tokens arrive one by one), prints /stats, then waits for
# Ctrl-C (on a terminal; otherwise it goes on at once) and sends SIGTERM to sshpool-demo,
# which drains and prints its shutdown report. Everything it started is stopped at the end.
#
# usage: app/demo.sh          (SSHPOOL_BUILD_DIR=dir to build elsewhere)
# Against real machines: build/app/sshpool-demo --config FILE (see sshpool-demo --help).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=app/demo-env.sh
source "$root/app/demo-env.sh"
sshpool_demo_setup

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
# dave's machine: its own key, whose public half the gateway's operator puts in dave's
# authorized_keys file.
mkdir -m 700 "$work/dave"
ssh-keygen -q -t ed25519 -N '' -C dave@laptop -f "$work/dave/id_ed25519"
cp "$work/dave/id_ed25519.pub" "$work/dave.keys"
dave_port=11434 # the port dave's ssh gives to -R: virtual, nothing listens on it
config=$work/sshpool-demo.json
cat >"$config" <<EOF
{
  "listen": "127.0.0.1:0",
  "agent_listen": "127.0.0.1:0",
  "agent_host_key": "agent_host_key",
  "log_level": "info",
  "max_connections_per_user": 2,
  "shutdown_grace_period": 10000,
  "users": {
$(user_json alice "$port_a"),
$(user_json bob "$port_b"),
$(user_json carol "$port_a"),
    "dave": {"mode": "agent", "authorized_keys_file": "dave.keys", "target_port": $dave_port}
  }
}
EOF

# The operator's first step: --check-config creates the agent listener's host key and shows
# its fingerprint and public key, which dave pins in his known_hosts.
"$build/app/sshpool-demo" --config "$config" --check-config >"$work/check.json" 2>/dev/null
host_key=$(sed -n 's/.*"host_public_key": "\(.*\)".*/\1/p' "$work/check.json")
host_fp=$(sed -n 's/.*"host_key_fingerprint": "\(.*\)".*/\1/p' "$work/check.json")

exec {gw}< <(exec setsid "$build/app/sshpool-demo" --config "$config" 2>"$work/sshpool-demo.log")
gw_pid=$!
pids+=("$gw_pid")
# Two lines: the agent listener's ("... agents dial in on port N (host key ...)"), then the
# front end's ("... listening on ADDR:PORT").
if ! read -r -t 30 agents_line <&"$gw" || ! read -r -t 30 line <&"$gw"; then
  echo "sshpool-demo did not start:" >&2
  cat "$work/sshpool-demo.log" >&2
  exit 1
fi
agent_port=${agents_line##*on port }
agent_port=${agent_port%% *}
base=http://127.0.0.1:${line##*:}
echo "== sshd on 127.0.0.1:$SSHD_PORT; backend-a on :$port_a (alice, carol), backend-b on :$port_b (bob, dave)"
echo "== $line (config: $config)"
echo "== $agents_line"
echo "   (--check-config showed it before the start: $host_fp)"

echo
echo "== dave's machine dials in: ssh -N -R $dave_port:127.0.0.1:$port_b -p $agent_port dave@127.0.0.1"
echo "[127.0.0.1]:$agent_port $host_key" >"$work/dave/known_hosts"
set -m
ssh -F /dev/null -N -R "$dave_port:127.0.0.1:$port_b" -p "$agent_port" \
  -i "$work/dave/id_ed25519" -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
  -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$work/dave/known_hosts" \
  -o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no -o ExitOnForwardFailure=yes \
  -o ServerAliveInterval=15 dave@127.0.0.1 2>"$work/dave/ssh.log" &
pids+=($!)
set +m
connected=0
for _ in $(seq 100); do
  if curl -sS "$base/metrics" | grep -q '^sshpool_agent_sessions{user="dave"} 1$'; then
    connected=1
    break
  fi
  sleep 0.1
done
if ((connected == 0)); then
  echo "dave's agent did not connect:" >&2
  cat "$work/dave/ssh.log" "$work/sshpool-demo.log" >&2
  exit 1
fi
echo "   connected: $(curl -sS "$base/metrics" | grep -E '^sshpool_agent_(sessions|connections_total|authenticated_total)' | tr '\n' ' ')"

echo
echo "== GET /api/tags for each user, through SSH"
for route in "alice header" "bob prefix" "carol header" "dave prefix"; do
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

stream_chat() { # USER HOW
  echo
  echo "== POST /u/$1/api/chat streamed with curl -N ($2): each token as it arrives"
  local start chunk ms token
  start=$(date +%s%N)
  curl -sS -N "$base/u/$1/api/chat" -H 'Content-Type: application/json' \
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
}
stream_chat bob "the gateway dialed bob's sshd"
stream_chat dave "dave's machine dialed in with ssh -R"

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
echo "== dave's ssh -R, disconnected by the drain with the reason:"
grep -h -i 'disconnect' "$work/dave/ssh.log" || echo "  (it has not written the reason yet)"
echo
echo "== sshpool-demo's request log lines (stderr; info level, one per request)"
grep -E ' request |shutdown' "$work/sshpool-demo.log" | cut -c1-220 || true
