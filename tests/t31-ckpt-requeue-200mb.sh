#!/bin/bash
# cg with 200 MB per rank: requeue (checkpoint on SIGTERM), restore on the same nodes, verify.
. "$(dirname "$0")/lib.sh"
id=$(submit -N2 -n4 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 200 --min-seconds 25 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 4 120
sleep 8
requeue_now "$id"
expect_ok "$id" 400
grep -q "restored from" "/var/log/slurm-ckpt/job-$id.log" || fail "job $id was not restored from its checkpoint"
