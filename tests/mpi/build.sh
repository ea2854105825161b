#!/bin/sh
# Build the MPI test programs.
# usage: tests/mpi/build.sh MPICC OUTDIR   e.g. tests/mpi/build.sh mpicc.mpich /tmp/out
set -eu
if [ $# -ne 2 ]; then
    echo "usage: $0 MPICC OUTDIR" >&2
    exit 2
fi
MPICC=$1
OUT=$2
SRC=$(cd "$(dirname "$0")" && pwd)
CFLAGS="-O2 -Wall -Wextra -std=gnu11"
mkdir -p "$OUT"
for prog in cg ring; do
    "$MPICC" $CFLAGS -o "$OUT/$prog" "$SRC/$prog.c" -lm
done
echo "built $OUT/cg $OUT/ring with $MPICC"
