#!/bin/bash
# Native (no container) MPICH programs run across 2 nodes through Slurm and verify.
. "$(dirname "$0")/lib.sh"
cg=$(submit -N2 -n4 --wrap "srun --mpi=pmi2 $VC_BIN/cg --n 24")
ring=$(submit -N2 -n4 --wrap "srun --mpi=pmi2 $VC_BIN/ring --seconds 3 --sleep-ms 1")
expect_ok "$cg" 180
expect_ok "$ring" 180
for j in "$cg" "$ring"; do
    nodes="$(job_out "$j" | sed -n 's/^\(cg\|ring\): rank [0-9]* host //p' | sort -u | wc -l)"
    [ "$nodes" = 2 ] || fail "job $j ran on $nodes node(s), expected 2"
done
