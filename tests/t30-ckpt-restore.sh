#!/bin/bash
# Checkpoint/restore of a container job: requeue (checkpoint on SIGTERM) and restore in new
# containers on other nodes with rank placement permuted, three cycles in one job; the job's own
# verification must still pass.
. "$(dirname "$0")/lib.sh"
id=$(submit -w node1,node2 -N2 -n4 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 45 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 4
sleep 4
for target in node2,node3 node1,node3 node1,node2; do
    before="$(rank_nodes "$id")"
    requeue_now "$id" "$target"
    wait_state "$id" RUNNING 120 || { show_job "$id"; fail "job $id did not restart"; }
    wait_running_ranks "$id" 4
    after="$(rank_nodes "$id")"
    slurm-ckpt status "$id" --json | jq -e 'all(.[]; .events | map(.what) | any(startswith("restored from")))' >/dev/null ||
        { show_job "$id"; fail "ranks were not restored from a checkpoint"; }
    say "restored: $before -> $after"
    [ "$before" != "$after" ] || fail "rank placement did not change"
    sleep 4
done
expect_ok "$id" 300
[ "$(job_out "$id" | grep -c '^VERIFICATION SUCCESSFUL')" = 1 ] || fail "expected exactly one verification line"
slurm-ckpt list "$id" | tail -n +2 | has . || fail "slurm-ckpt list shows no generation of job $id"
