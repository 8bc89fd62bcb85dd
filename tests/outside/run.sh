#!/bin/sh
# Install libshmval into a temporary prefix, then use it as an outside
# project would, four ways: find_package with the shared target and with the
# static one, and pkg-config for the shared and the static library. Each
# program is run; so are the installed tool (found through its relative
# runpath, before any ldconfig), its man page and the Python package.
#
#   sh tests/outside/run.sh
#
# Needs pkg-config (Debian: pkgconf) and groff (Debian: groff-base).
set -eu
cd "$(dirname "$0")/../.."
src=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
p="$tmp/prefix"
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B "$tmp/build" -DSHMVAL_BUILD_TESTS=OFF -DSHMVAL_BUILD_EXAMPLES=OFF \
  -DSHMVAL_BUILD_BENCH=OFF -DSHMVAL_WERROR=ON >/dev/null
cmake --build "$tmp/build" -j "$jobs" >/dev/null
# The prefix given at install time, as the README does: everything installed
# must find everything else relative to itself.
cmake --install "$tmp/build" --prefix "$p" >/dev/null
echo "installed into a temporary prefix"

"$p/bin/shmval" --version
# The exported targets name system libraries, never a path to this machine's copy.
if grep -rE '"?/[^ "]*lib(rt|pthread)[.]' "$p"/lib*/cmake "$p"/lib*/*/cmake 2>/dev/null; then
  echo "the exported CMake targets hold an absolute library path" >&2
  exit 1
fi
man1=$(find "$p" -name shmval.1)
test -n "$man1"
warn=$(groff -mandoc -Tutf8 -ww -z "$man1" 2>&1)
[ -z "$warn" ] || { echo "$warn"; echo "the man page has warnings" >&2; exit 1; }
groff -mandoc -Tutf8 -P-cbou "$man1" | grep -q "EXIT STATUS"
echo "man page: renders without warnings"
test -f "$(find "$p" -path '*share/doc/shmval/README.md')"
test -f "$(find "$p" -path '*share/doc/shmval/LICENSE')"

# The Python package, from the installed copy only: it loads the installed
# library through the link beside it (no SHMVAL_LIBRARY).
if command -v python3 >/dev/null 2>&1; then
  pydir=$(sed -n 's/^SHMVAL_PYTHON_DIR:STRING=//p' "$tmp/build/CMakeCache.txt")
  case $pydir in /*) ;; *) pydir="$p/$pydir" ;; esac
  (cd "$tmp" && env -u SHMVAL_LIBRARY PYTHONPATH="$pydir" python3 -c '
import os, sys, shmval
lib = os.path.realpath(shmval.library)
assert lib.startswith(os.path.realpath(sys.argv[1])), lib
v = shmval.Value("i", 41)
v.value += 1
print("python: import shmval from the install, %s, Value %d" % (os.path.basename(lib), v.value))
' "$p")
fi

# The archive must not pull in the shared library.
no_shared() { ! ldd "$1" | grep -q libshmval; }

for kind in shared static; do
  flag=OFF
  [ "$kind" = static ] && flag=ON
  cmake -S "$src/tests/outside" -B "$tmp/out-$kind" -DCMAKE_PREFIX_PATH="$p" -DUSE_STATIC=$flag \
    >/dev/null
  cmake --build "$tmp/out-$kind" >/dev/null
  printf 'find_package, %s: ' "$kind"
  "$tmp/out-$kind/outside"
done
no_shared "$tmp/out-static/outside"

pc=$(find "$p" -name shmval.pc -printf '%h')
export PKG_CONFIG_PATH="$pc"
libdir=$(pkg-config --variable=libdir shmval)
# shellcheck disable=SC2046 # pkg-config prints a list of arguments.
cc -o "$tmp/pc-shared" tests/outside/main.c $(pkg-config --cflags --libs shmval) -Wl,-rpath,"$libdir"
printf 'pkg-config shmval: '
"$tmp/pc-shared"
# shellcheck disable=SC2046
cc -o "$tmp/pc-static" tests/outside/main.c $(pkg-config --cflags --libs shmval-static)
printf 'pkg-config shmval-static: '
"$tmp/pc-static"
no_shared "$tmp/pc-static"
echo "outside builds: 4 passed, 0 failed"
