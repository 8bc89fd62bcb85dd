#!/bin/sh
# Build libshmval and run its whole test suite (the README's test command).
#
#   sh tests/run.sh                 build in build/test and run every test
#   BUILD_DIR=dir sh tests/run.sh   use another build directory
#   SHMVAL_CMAKE_ARGS='-DSHMVAL_SANITIZER=address,undefined' sh tests/run.sh
#   SHMVAL_CTEST_ARGS='-R lock' sh tests/run.sh     pass arguments to ctest
#
# cmocka (Debian: libcmocka-dev) is installed when it is missing and this
# runs as root; otherwise the script says what to install and stops. python3
# (for the Python binding's tests) likewise, except that without it those
# tests are left out rather than the run stopped.
set -eu
cd "$(dirname "$0")/.."

have_cmocka() {
  for d in /usr/include /usr/local/include; do
    [ -f "$d/cmocka.h" ] && return 0
  done
  return 1
}

if ! have_cmocka; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests/run.sh: cmocka is missing; installing libcmocka-dev with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq libcmocka-dev >/dev/null
  else
    echo "tests/run.sh: the cmocka test library is missing." >&2
    echo "Install it as root, then run this again:  apt-get install libcmocka-dev" >&2
    exit 2
  fi
fi

# The Python binding's tests need python3 (Debian: python3), installed the same way.
if ! command -v python3 >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests/run.sh: python3 is missing; installing it with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3 >/dev/null
  else
    echo "tests/run.sh: python3 is missing: the Python binding's tests are left out." >&2
    echo "Install it as root to run them too:  apt-get install python3" >&2
  fi
fi

build=${BUILD_DIR:-build/test}
jobs=$(nproc 2>/dev/null || echo 2)
# shellcheck disable=SC2086 # SHMVAL_CMAKE_ARGS is a list of arguments.
cmake -S . -B "$build" -DSHMVAL_WERROR=ON -DSHMVAL_BUILD_TESTS=ON ${SHMVAL_CMAKE_ARGS:-}
cmake --build "$build" -j "$jobs"
# shellcheck disable=SC2086 # SHMVAL_CTEST_ARGS is a list of arguments.
ctest --test-dir "$build" --output-on-failure -j "$jobs" ${SHMVAL_CTEST_ARGS:-}
