#!/bin/sh
# Keep the layering of src/ true: each file may include only the headers of
# its own module and of the layers below it (docs/design.md, "Source map").
# Exits 1, naming the offending line, when a file includes a header of its
# own layer's peer or of a layer above, includes internal.h (the white-box
# tests' umbrella), or is not placed in the list below.
#
#   sh tools/check_layers.sh [SRC_DIR]
set -eu
src=${1:-$(dirname "$0")/../src}

# The layers, bottom first. error.c stands apart: it needs only shmval.h.
layers="prim layout lock objhdr journal heap arena table reclaim dir object value array sync dict list segment check"

rank() {
  i=0
  for l in $layers; do
    [ "$l" = "$1" ] && { echo $i; return; }
    i=$((i + 1))
  done
  echo -1
}

status=0
for f in "$src"/*.c "$src"/*.h; do
  base=${f##*/}
  mod=${base%.*}
  case $base in error.c | internal.h) continue ;; esac
  me=$(rank "$mod")
  if [ "$me" -lt 0 ]; then
    echo "$f: not placed in a layer (add it to tools/check_layers.sh and the source map)"
    status=1
    continue
  fi
  grep -n '^#include "' "$f" | while IFS= read -r line; do
    inc=$(printf '%s\n' "$line" | sed 's/.*#include "\([^"]*\)".*/\1/')
    [ "$inc" = shmval.h ] && continue
    them=$(rank "${inc%.h}")
    if [ "$inc" = internal.h ] || [ "$them" -lt 0 ]; then
      echo "$f:${line%%:*}: includes $inc, which is not a module header"
      exit 1
    fi
    if [ "$them" -gt "$me" ] || { [ "$them" -eq "$me" ] && [ "${inc%.h}" != "$mod" ]; }; then
      echo "$f:${line%%:*}: $mod (layer $me) includes $inc (layer $them): only layers below may be included"
      exit 1
    fi
  done || status=1
done
[ $status -eq 0 ] && echo "layers: every src/ file includes only the layers below it"
exit $status
