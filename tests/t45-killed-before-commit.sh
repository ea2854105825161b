#!/bin/bash
# The job killed (kill -9 of every supervisor) after the last rank's dump and before the commit:
# the half-written generation is never used; requeued, the job restores from the previous good
# generation on other nodes and verifies. The images are large enough (300 MB a rank) that sealing
# them (hash + fsync) keeps the window between the last dump and the commit open for a while.
. "$(dirname "$0")/lib.sh"
id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 300 --min-seconds 50 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2 120
wait_output "$id" "^cg: solve"
slurm-ckpt checkpoint "$id" --wait 200 >&2 || { show_job "$id"; fail "first checkpoint failed"; }
dir="$VC_CKPT_ROOT/$VC_USER/$id"
[ -d "$dir/g0001" ] || { show_job "$id"; fail "no g0001 after the first checkpoint"; }
slurm-ckpt checkpoint "$id" --wait 200 >"$JOBDIR/ckpt-$id.txt" 2>&1 &
ckpt_pid=$!
tmp="$dir/.g0002.tmp"
end=$((SECONDS + 120))
until [ -e "$tmp/.dumped-r0" ] && [ -e "$tmp/.dumped-r1" ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "the second checkpoint's dumps did not finish"; }
    sleep 0.02
done
pkill -KILL -f "^slurm-ckpt supervise .*--job $id " || fail "no supervisor of job $id to kill"
say "every rank dumped g0002; killed every supervisor of job $id before the commit"
wait "$ckpt_pid" || true
[ ! -d "$dir/g0002" ] || fail "g0002 was committed before the kill landed (the test missed its window)"
requeue_now "$id" node2,node3
wait_state "$id" RUNNING 120 || { show_job "$id"; fail "job $id did not restart"; }
wait_running_ranks "$id" 2 120
slurm-ckpt status "$id" --json | jq -e 'all(.[]; .events | map(.what) | any(startswith("restored from g0001")))' >/dev/null ||
    { show_job "$id"; slurm-ckpt status "$id" >&2; fail "ranks of job $id were not restored from g0001"; }
say "restored from g0001; the half-written g0002 was left alone"
expect_ok "$id" 300
