#!/bin/bash
# slurmctld restarted between a requeue (the job checkpointed on SIGTERM) and the restore: the
# controller reloads its saved state, the job starts again from its checkpoint and verifies.
. "$(dirname "$0")/lib.sh"
id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 40 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2
sleep 3
requeuehold_now "$id"
[ -n "$(ls -d "$VC_CKPT_ROOT/$VC_USER/$id"/g[0-9]* 2>/dev/null)" ] || { show_job "$id"; fail "no generation after the requeue"; }
"$REPO/scripts/vcluster" restart-slurmctld >&2 || fail "slurmctld did not restart"
[ "$(job_field "$id" JobState)" = PENDING ] || { show_job "$id"; fail "job $id lost by the controller's restart"; }
scontrol update jobid="$id" NodeList=node2,node3 StartTime=now || fail "cannot move job $id"
scontrol release "$id" || fail "cannot release job $id"
wait_state "$id" RUNNING 120 || { show_job "$id"; fail "job $id did not restart after slurmctld's restart"; }
wait_running_ranks "$id" 2
slurm-ckpt status "$id" --json | jq -e 'all(.[]; .events | map(.what) | any(startswith("restored from")))' >/dev/null ||
    { show_job "$id"; fail "ranks of job $id were not restored from a checkpoint"; }
expect_ok "$id" 300
