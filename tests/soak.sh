#!/usr/bin/env bash
# Soak: mixed load with churn and faults for MINUTES (default 10), printing RSS, fds and
# threads every 10 s; exits non-zero unless they end flat (see tests/soak/soak.cpp).
# Not part of CI. Builds what is missing first (same build dir as tests/run.sh).
# usage: tests/soak.sh [MINUTES]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SSHPOOL_BUILD_DIR:-$root/build}
minutes=${1:-10}
"$root/app/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSSHPOOL_BUILD_TESTS=ON \
  -DSSHPOOL_BUILD_APP=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target sshpool-soak
exec "$build/tests/sshpool-soak" "$minutes"
