#!/usr/bin/env bash
# Sanitizer runs (issue #6), each in its own build directory with gcc at -O1 -g:
#   address  ASan + UBSan (+ LSan at every exit) over the whole ctest suite
#   thread   TSan over the pool and actor unit tests on CAF's test coordinator
#            (test_user_pool) and over the threaded code that does not run on CAF
#            (test_backend: the epoll HTTP backend against concurrent clients;
#            test_log_writer: the gateway's log output and its writer thread).
#            Not the integration tests (test_forward, test_lifecycle, test_actors_api):
#            Debian's libcaf_core is not instrumented, so TSan cannot see the atomics that
#            order CAF's mailboxes and its work-stealing scheduler. Every message payload
#            and every actor that moves between scheduler threads is then reported as a
#            race (test_forward: ~870 distinct reports in its first minute, each with CAF's
#            hand-off between the two stacks). Suppressing them would need patterns that
#            match every actor handler and so would hide real races in actors/ too; those
#            tests need a CAF built with -fsanitize=thread.
# usage: tests/sanitize.sh [address|thread|all]      (default all)
# Build directories: build-asan and build-tsan under $SSHPOOL_SANITIZE_BUILD_ROOT (default:
# the repository). Every sanitized process, the test binaries and the programs they start
# (sshpool-demo, sshpool-example, sshpool-backend), writes its reports to
# <build>/sanitizer-logs; a report there fails the run even when the test that started the
# process did not notice it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_root=${SSHPOOL_SANITIZE_BUILD_ROOT:-$root}
mode=${1:-all}
case $mode in
  address | thread | all) ;;
  *)
    echo "usage: $0 [address|thread|all]" >&2
    exit 2
    ;;
esac
"$root/app/install-deps.sh" prometheus openssl
supp=$root/tests/sanitizers

# configure_and_build DIR SANITIZERS [TARGET...]: no targets = everything
configure_and_build() {
  local dir=$1 sanitizers=$2
  shift 2
  local targets=()
  (($# > 0)) && targets=(--target "$@")
  # gcc: CXX is only read when the build directory is first configured.
  CXX=g++ cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
    -DSSHPOOL_WERROR=ON -DSSHPOOL_SANITIZE="$sanitizers" \
    -DSSHPOOL_BUILD_TESTS=ON -DSSHPOOL_BUILD_APP=ON -DSSHPOOL_BUILD_BENCHMARKS=OFF >/dev/null
  local start=$SECONDS
  nice -n 5 cmake --build "$dir" -j 2 "${targets[@]}"
  echo "sanitize: built $dir in $((SECONDS - start)) s"
}

# run_ctest DIR [CTEST ARGUMENTS...]: fails on a failed test or on any sanitizer report
run_ctest() {
  local dir=$1
  shift
  local logs=$dir/sanitizer-logs
  rm -rf "$logs"
  mkdir -p "$logs"
  local start=$SECONDS rc=0
  (cd "$dir" && ctest --output-on-failure "$@") || rc=$?
  echo "sanitize: ctest in $dir took $((SECONDS - start)) s"
  local reports
  reports=$(grep -l "SUMMARY:" "$logs"/* 2>/dev/null || true)
  if [[ -n $reports ]]; then
    for f in $reports; do
      echo "==== sanitizer report $f"
      cat "$f"
    done
    rc=1
  fi
  return $rc
}

rc=0
if [[ $mode == address || $mode == all ]]; then
  dir=$build_root/build-asan
  configure_and_build "$dir" address,undefined
  logs=$dir/sanitizer-logs
  export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:log_path=$logs/asan"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp:log_path=$logs/ubsan"
  export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
  run_ctest "$dir" || rc=1
  unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
fi
if [[ $mode == thread || $mode == all ]]; then
  dir=$build_root/build-tsan
  tsan_tests=(test_user_pool test_backend test_log_writer)
  configure_and_build "$dir" thread "${tsan_tests[@]}"
  logs=$dir/sanitizer-logs
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$supp/tsan.supp:log_path=$logs/tsan"
  run_ctest "$dir" -R "^($(
    IFS='|'
    echo "${tsan_tests[*]}"
  ))\$" || rc=1
  unset TSAN_OPTIONS
fi
exit $rc
