#!/usr/bin/env bash
# Runs an sshpool-example binary against a private sshd and two backends (two users).
# usage: run_example.sh EXAMPLE_BINARY BACKEND_BINARY WORK_DIR [extra example args...]
set -euo pipefail
example=$1 backend=$2 dir=$3
shift 3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=app/sshd-env.sh
source "$here/../../app/sshd-env.sh"
mkdir -p "$dir"
sshpool_sshd_start "$dir/sshd" >/dev/null
coproc B1 { exec "$backend" --name backend-one --token-delay-ms 5; }
coproc B2 { exec "$backend" --name backend-two --token-delay-ms 5; }
trap 'kill "$B1_PID" "$B2_PID" 2>/dev/null || true; sshpool_sshd_stop' EXIT
# Each backend prints one line once it listens: wait for that event (bounded).
read -r -t 10 line1 <&"${B1[0]}"
read -r -t 10 line2 <&"${B2[0]}"
"$example" --port "$SSHD_PORT" --login "$SSHD_USER" --identity "$SSHD_IDENTITY" \
  --known-hosts "$SSHD_KNOWN_HOSTS" "$@" "alice=${line1##*:}" "bob=${line2##*:}"
