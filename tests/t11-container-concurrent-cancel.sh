#!/bin/bash
# Two container jobs at once on shared nodes don't collide; scancel mid-run leaves no container.
. "$(dirname "$0")/lib.sh"
cp "$REPO/examples/cg-container.sbatch" "$JOBDIR/" && chmod 644 "$JOBDIR/cg-container.sbatch"
a=$(submit -N2 -n2 --container-image="$VC_IMAGE" cg-container.sbatch --n 16 --min-seconds 8 --sleep-ms 5)
b=$(submit -N2 -n2 --container-image="$VC_IMAGE" cg-container.sbatch --n 16 --min-seconds 8 --sleep-ms 5)
wait_state "$a" RUNNING 60 && wait_state "$b" RUNNING 60 || fail "jobs did not run concurrently"
expect_ok "$a" 300
expect_ok "$b" 300

c=$(submit -N2 -n4 --container-image="$VC_IMAGE" cg-container.sbatch --n 16 --min-seconds 300 --sleep-ms 20)
wait_state "$c" RUNNING 60 || fail "job $c did not start"
for _ in $(seq 60); do [ "$(containers_of "$c")" = 4 ] && break; sleep 0.5; done
[ "$(containers_of "$c")" = 4 ] || { show_job "$c"; fail "job $c has $(containers_of "$c") containers, expected 4"; }
scancel "$c"
wait_job "$c" 120 >/dev/null || fail "job $c did not end after scancel"
for _ in $(seq 60); do [ "$(containers_of "$c")" = 0 ] && break; sleep 0.5; done
[ "$(containers_of "$c")" = 0 ] || fail "job $c left $(containers_of "$c") containers after scancel"
say "scancel removed every container of job $c"
