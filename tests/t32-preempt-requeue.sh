#!/bin/bash
# Preemption with PreemptMode=REQUEUE: a high-priority job takes the nodes of a checkpointing container
# job in partition lowrq; the low job is checkpointed (SIGTERM, GraceTime), requeued, restored after
# the high job, and verifies.
. "$(dirname "$0")/lib.sh"
low=$(submit -p lowrq -w node1,node2 -N2 -n4 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 30 --sleep-ms 5")
wait_state "$low" RUNNING 60 || fail "low job did not start"
wait_running_ranks "$low" 4
sleep 4
high=$(submit -p high -w node1,node2 -N2 -n8 --wrap "srun sleep 5")
end=$((SECONDS + 120))
until [ "$(job_field "$low" JobState)" = PENDING ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$low"; fail "low job was not requeued by preemption"; }
    sleep 0.5
done
say "low job $low preempted and requeued"
st="$(wait_job "$high" 120)"; [ "$st" = COMPLETED ] || fail "high job ended $st"
scontrol update jobid="$low" StartTime=now
expect_ok "$low" 300
grep -q "restored from" "/var/log/slurm-ckpt/job-$low.log" || fail "low job was not restored from a checkpoint"
