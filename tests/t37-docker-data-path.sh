#!/bin/bash
# Site fallback data_path=docker: Docker's own checkpoint path (images tarred through containerd)
# instead of the runtime wrapper's redirect. A checkpoint on requeue and a restore with every rank
# on another node must still work and the job verify; the wrapper must have seen Docker's path.
. "$(dirname "$0")/lib.sh"
with_site data_path=docker
mark=$(wc -l </var/log/slurm-ckpt/runtime.log 2>/dev/null || echo 0)
id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 30 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2
sleep 3
requeue_restored "$id" node3,node1 2
expect_ok "$id" 200
tail -n +"$((mark + 1))" /var/log/slurm-ckpt/runtime.log | has "(Docker's path)" ||
    { show_job "$id"; fail "the restore did not take Docker's path"; }
[ "$(job_out "$id" | grep -c '^VERIFICATION SUCCESSFUL')" = 1 ] || fail "expected exactly one verification line"
say "checkpoint and restore through Docker's own path verified"
