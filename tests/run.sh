#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds (warnings are errors), runs ctest.
# usage: tests/run.sh [ctest arguments...]   e.g. tests/run.sh -L unit
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SSHPOOL_BUILD_DIR:-$root/build}
"$root/app/install-deps.sh" prometheus openssl
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSSHPOOL_WERROR=ON \
  -DSSHPOOL_BUILD_TESTS=ON -DSSHPOOL_BUILD_APP=ON
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure "$@"
