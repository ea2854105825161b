#!/bin/bash
# Site on_restore_failure=previous: a generation refused on one rank at restore (its images were
# altered) is set aside, the reason goes into the job's Comment and `slurm-ckpt list`, and the job
# is requeued at once to restore the previous good generation, which verifies.
. "$(dirname "$0")/lib.sh"
with_site on_restore_failure=previous
id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 50 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2
sleep 3
slurm-ckpt checkpoint "$id" --wait 120 >&2 || { show_job "$id"; fail "the on-demand checkpoint failed"; }
sleep 2
# The requeue checkpoints again (g0002) and holds the job: alter g0002 on rank 1.
requeuehold_now "$id"
dir="$VC_CKPT_ROOT/$VC_USER/$id"
[ -d "$dir/g0002" ] || { show_job "$id"; ls -la "$dir" >&2; fail "no g0002 after the requeue"; }
img="$(ls -S "$dir/g0002/rank-1/"pages-*.img 2>/dev/null | head -n1)"
[ -f "$img" ] || fail "g0002 has no page image of rank 1"
printf 'X' | dd of="$img" bs=1 seek=100 conv=notrunc status=none
say "altered $(basename "$img") of rank 1 in g0002"
scontrol update jobid="$id" NodeList=node2,node3 StartTime=now || fail "cannot move job $id"
scontrol release "$id" || fail "cannot release job $id"
# Rank 0 sets g0002 aside and requeues the job; Slurm then holds it back a while: start it now.
end=$((SECONDS + 120))
until [ -e "$dir/.bad-g0002" ] && [ "$(job_field "$id" JobState)" = PENDING ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "g0002 was not set aside and the job requeued"; }
    sleep 0.5
done
sleep 2
scontrol update jobid="$id" StartTime=now || fail "cannot release job $id"
scontrol show job "$id" | has "Comment=slurm-ckpt: restore of g0002 failed (set aside" ||
    { show_job "$id"; fail "the job's Comment does not say why g0002 was set aside"; }
wait_state "$id" RUNNING 120 || { show_job "$id"; fail "job $id did not restart after g0002 was set aside"; }
wait_running_ranks "$id" 2
slurm-ckpt status "$id" --json | jq -e 'all(.[]; .events | map(.what) | any(startswith("restored from g0001")))' >/dev/null ||
    { show_job "$id"; slurm-ckpt status "$id" >&2; fail "ranks of job $id were not restored from g0001"; }
slurm-ckpt list "$id" | has "set aside: .*checksum mismatch" ||
    { slurm-ckpt list "$id" >&2; fail "slurm-ckpt list does not show g0002 set aside with its reason"; }
say "g0002 set aside (checksum of rank 1), restored from g0001"
expect_ok "$id" 300
