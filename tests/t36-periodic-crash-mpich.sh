#!/bin/bash
# t33 with MPICH 4.2: a periodic checkpoint taken while the job runs on, a crash, and a restore from
# that generation (Debian bookworm's MPICH 4.0.2 lost its hydra connections here; docs/IMAGES.md).
CRASH_MPI=mpich exec "$(dirname "$0")/t33-periodic-crash.sh"
