#!/bin/bash
# A checkpoint that fails midway (the checkpoint storage fills up during the dumps) leaves the job
# running; the half-written generation never becomes visible; the job stays restartable from its
# previous good generation, and is restored from it after a requeue (whose own checkpoint also
# fails for lack of space). cg with 200 MB per rank must still verify.
. "$(dirname "$0")/lib.sh"
area="$VC_CKPT_ROOT/$VC_USER/full-disk-test"
# Room for one generation of 4 x ~205 MB, not for two: a tmpfs on the local directory, a
# directory quota of the volume on GlusterFS (every node's client sees that one).
if [ "${VC_STORAGE:-local}" = gluster ]; then
    cleanup_quota() { "$REPO/scripts/vcluster" storage quota "/$VC_USER/full-disk-test" off >&2 || true; }
    trap cleanup_quota EXIT
    mkdir -p "$area"
    "$REPO/scripts/vcluster" storage quota "/$VC_USER/full-disk-test" 1200MB >&2
    used() { du -sh "$area" | cut -f1; }
else
    cleanup_mount() { umount "$area" 2>/dev/null || true; }
    trap cleanup_mount EXIT
    mkdir -p "$area"
    mount -t tmpfs -o size=1200m,mode=0755 slurm-ckpt-test "$area"
    used() { df -h --output=used "$area" | tail -1; }
fi
id=$(submit -N2 -n4 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt=full-disk-test \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 200 --min-seconds 60 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 4 120
wait_output "$id" "^cg: solve"
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "first checkpoint of job $id failed"; }
say "generation 1 written ($(used) used)"
sleep 2
if slurm-ckpt checkpoint "$id" 2>/tmp/t34-ckpt.err; then
    fail "second checkpoint succeeded on a full disk"
fi
say "second checkpoint failed as expected: $(tail -1 /tmp/t34-ckpt.err)"
sleep 2
[ "$(job_field "$id" JobState)" = RUNNING ] || { show_job "$id"; fail "job $id stopped after a failed checkpoint"; }
[ "$(paused_count "$id")" = 0 ] || fail "containers left frozen after a failed checkpoint"
[ "$(slurm-ckpt list "$id" --json | jq '[.[].manifest.generation] | join(",")' -r)" = 1 ] ||
    fail "only generation 1 may be visible, got: $(slurm-ckpt list "$id")"
requeue_now "$id"
expect_ok "$id" 400
grep -q "restored from .*/g0001/" "/var/log/slurm-ckpt/job-$id.log" ||
    { show_job "$id"; fail "job $id was not restored from generation 1"; }
