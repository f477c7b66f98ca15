#!/usr/bin/env bash
# Runs an sshpool-example binary against a private OpenSSH sshd (own keys, own config,
# high port on 127.0.0.1) and two sshpool-backend services, one per user.
# usage: run_example.sh EXAMPLE_BINARY BACKEND_BINARY WORK_DIR [extra example args...]
set -euo pipefail
example=$1 backend=$2 dir=$3
shift 3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=app/sshd-env.sh
source "$here/sshd-env.sh"
mkdir -p "$dir"
sshpool_sshd_start "$dir/sshd" >/dev/null
exec {b1}< <(exec "$backend" --name backend-alice --token-delay-ms 5)
b1_pid=$!
exec {b2}< <(exec "$backend" --name backend-bob --token-delay-ms 5)
b2_pid=$!
trap 'kill "$b1_pid" "$b2_pid" 2>/dev/null || true; sshpool_sshd_stop' EXIT
# Each backend prints one line once it listens: wait for that event (bounded).
read -r -t 10 line1 <&"$b1"
read -r -t 10 line2 <&"$b2"
echo "sshd on 127.0.0.1:$SSHD_PORT (login $SSHD_USER); $line1; $line2"
"$example" --port "$SSHD_PORT" --login "$SSHD_USER" --identity "$SSHD_IDENTITY" \
  --known-hosts "$SSHD_KNOWN_HOSTS" "$@" "alice=${line1##*:}" "bob=${line2##*:}"
