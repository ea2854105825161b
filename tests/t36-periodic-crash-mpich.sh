#!/bin/bash
# t33 with MPICH 4.2: a periodic checkpoint taken while the job runs on, a crash, and a restore from
# that generation (Debian bookworm's MPICH 4.0.2 lost its hydra connections here; docs/IMAGES.md).
# Opt-in (SLURM_CKPT_MPICH_CRASH=1): MPICH's checkpoint and restore onto other nodes stay in the
# CI through t40's ckpt cells.
if [ "${SLURM_CKPT_MPICH_CRASH:-0}" != 1 ]; then
    echo "  [t36-periodic-crash-mpich] SKIP: opt-in (SLURM_CKPT_MPICH_CRASH=1 tests/t36-periodic-crash-mpich.sh)" >&2
    exit 0
fi
CRASH_MPI=mpich exec "$(dirname "$0")/t33-periodic-crash.sh"
