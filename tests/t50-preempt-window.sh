#!/bin/bash
# Preemption windows. The nodes' measured checkpoint speeds (kept under <ckpt_root>/.state/.nodes/)
# are replaced by slow ones for the test: (1) a job in lowrq (GraceTime=60, KillWait=30) whose
# checkpoint is estimated at 100 s gets a warning in its output and in status, and runs normally;
# (2) with an estimate of 5000 s, more than the longest window plus the site timeout, a requeue
# does not start a dump that cannot finish: the job restarts from its earlier generation.
. "$(dirname "$0")/lib.sh"
nodes_dir="$VC_CKPT_ROOT/.state/.nodes"
saved="/tmp/$TEST_NAME.nodes"
rm -rf "$saved"
[ -d "$nodes_dir" ] && cp -a "$nodes_dir" "$saved"
trap 'rm -rf "$nodes_dir"; [ -d "$saved" ] && cp -a "$saved" "$nodes_dir"; true' EXIT
slow() { # slow OVERHEAD_SECONDS: every node's record says a checkpoint costs that much
    mkdir -p "$nodes_dir"
    for n in $VC_NODES; do
        printf '{"node":"%s","bytes_per_second":0,"overhead_seconds":%s,"samples":1,"updated":0}\n' "$n" "$1" >"$nodes_dir/$n.json"
    done
}

slow 100
id=$(submit -p lowrq -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 20 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2
end=$((SECONDS + 30))
until slurm-ckpt status "$id" --json | jq -e 'any(.[]; (.window_warning // "") | contains("GraceTime+KillWait 90 s"))' >/dev/null; do
    [ "$SECONDS" -lt "$end" ] || { slurm-ckpt status "$id"; fail "status shows no window warning for job $id"; }
    sleep 0.5
done
expect_ok "$id" 300
job_out "$id" | has "slurm-ckpt: warning: a checkpoint of this job needs about 100 s .*lowrq's preemption window (GraceTime+KillWait 90 s)" ||
    { show_job "$id"; fail "job $id's output has no window warning"; }
say "job $id warned: its checkpoint (about 100 s) exceeds lowrq's GraceTime+KillWait"

slow 5000
id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 45 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2
sleep 3
# An on-demand checkpoint is taken whatever the estimate (the job runs on).
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "on-demand checkpoint of job $id failed"; }
sleep 2
requeue_now "$id" node1,node3
wait_state "$id" RUNNING 120 || { show_job "$id"; fail "job $id did not restart"; }
wait_running_ranks "$id" 2
slurm-ckpt status "$id" --json | jq -e 'all(.[]; .events | map(.what) | any(startswith("restored from g0001")))' >/dev/null ||
    { slurm-ckpt status "$id"; fail "job $id did not restart from g0001"; }
[ ! -e "$VC_CKPT_ROOT/$VC_USER/$id/g0002" ] || fail "a generation was committed on the requeue"
expect_ok "$id" 300
job_out "$id" | has "slurm-ckpt: not starting a checkpoint that needs about [0-9]* s with [0-9]* s left before Slurm kills the job; g0001 stays its restart point" ||
    { show_job "$id"; fail "job $id's output does not say why it took no checkpoint"; }
say "job $id took no checkpoint it could not finish and restarted verified from g0001"
