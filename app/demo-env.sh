# shellcheck shell=bash
# The common start of the demo scripts (app/demo.sh, app/cluster-demo.sh). Source it from
# bash with `root` set to the repository, then call
#
#   sshpool_demo_setup [EXTRA_PACKAGES...]
#
# It installs what is missing (app/install-deps.sh, plus the packages named), builds
# sshpool-demo and sshpool-backend in $SSHPOOL_BUILD_DIR (default $root/build; sets `build`),
# sources app/sshd-env.sh, and makes a work directory `work` and an empty array `pids`. On
# exit every pid in `pids` gets SIGTERM, the private sshd stops and `work` is removed.

sshpool_demo_setup() {
  build=${SSHPOOL_BUILD_DIR:-$root/build}
  "$root/app/install-deps.sh" "$@"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j "$(nproc)" --target sshpool-demo sshpool-backend
  # shellcheck source=app/sshd-env.sh
  source "$root/app/sshd-env.sh"
  work=$(mktemp -d)
  pids=()
  trap _sshpool_demo_cleanup EXIT
}

_sshpool_demo_cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  sshpool_sshd_stop
  rm -rf "$work"
}
