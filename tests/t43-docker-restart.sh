#!/bin/bash
# dockerd restarted on a node while the job runs (an upgrade, a crash of the daemon): with
# live-restore the rank's container runs on and its supervisor waits for the daemon to answer again
# and re-attaches its output. Docker 20.10 cannot checkpoint a container it re-adopted (moby's
# libcontainerd forgets the runtime-options type): the job is told so, a checkpoint after the
# restart fails cleanly with the job running on, and a requeue restores the generation taken
# before the restart, on other nodes, and verifies.
. "$(dirname "$0")/lib.sh"
id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 45 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2
sleep 2
slurm-ckpt checkpoint "$id" --wait 120 >&2 || { show_job "$id"; fail "the checkpoint before the restart failed"; }
"$REPO/scripts/vcluster" restart-docker node2 >&2 || fail "dockerd on node2 did not restart"
end=$((SECONDS + 60))
until slurm-ckpt status "$id" --json 2>/dev/null |
    jq -e 'any(.[]; .events | map(.what) | any(startswith("container engine came back")))' >/dev/null; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "rank on node2 did not see its dockerd come back"; }
    [ "$(job_field "$id" JobState)" = RUNNING ] || { show_job "$id"; fail "job $id did not survive dockerd's restart on node2"; }
    sleep 0.5
done
say "the rank on node2 rejoined its restarted dockerd"
sleep 1
job_out "$id" | has "cannot checkpoint a container it re-adopted" ||
    { show_job "$id"; fail "the job was not told that its checkpoints will fail"; }
if slurm-ckpt checkpoint "$id" --wait 120 >"$JOBDIR/ckpt-$id.txt" 2>&1; then
    fail "a checkpoint of a re-adopted container succeeded: is Docker newer than 20.10? then check it restores"
fi
[ "$(job_field "$id" JobState)" = RUNNING ] || { show_job "$id"; fail "job $id did not keep running after the failed checkpoint"; }
# The failing rank reports at once; the others thaw when they learn of it.
end=$((SECONDS + 30))
until [ "$(paused_count "$id")" = 0 ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "containers of job $id left frozen"; }
    sleep 0.5
done
requeue_now "$id" node1,node3
wait_state "$id" RUNNING 120 || { show_job "$id"; fail "job $id did not restart"; }
wait_running_ranks "$id" 2
slurm-ckpt status "$id" --json | jq -e 'all(.[]; .events | map(.what) | any(startswith("restored from g0001")))' >/dev/null ||
    { show_job "$id"; slurm-ckpt status "$id" >&2; fail "ranks of job $id were not restored from g0001"; }
expect_ok "$id" 300
