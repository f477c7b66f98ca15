#!/usr/bin/env bash
# The demo end to end on a fresh Debian machine: installs what is missing, builds, starts a
# private OpenSSH sshd on 127.0.0.1 (generated host and user keys, own config, high port)
# and two HTTP backends on loopback, then runs sshpool-example, a program that embeds the
# engine and forwards real requests through SSH for two users, printing responses and stats.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SSHPOOL_BUILD_DIR:-$root/build}
"$root/app/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target sshpool-example sshpool-backend
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== sshpool demo: private sshd + two backends on 127.0.0.1, two users (alice, bob)"
"$root/app/run-example.sh" "$build/app/example/sshpool-example" "$build/app/sshpool-backend" \
  "$work" "$@"
