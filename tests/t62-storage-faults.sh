#!/bin/bash
# Storage faults besides the server going away while a job runs (t60); --storage=gluster only.
# 1. One node's storage client is killed while the ranks dump: the checkpoint fails within the site
#    timeout (plus a margin), the job runs on unfrozen, nothing is committed; with the client
#    remounted the next checkpoint commits.
# 2. The storage server is gone when the requeued job restarts: the job is not started from scratch
#    but held, the reason in its Comment (site on_restore_failure=hold); released once the storage
#    is back, it restores its newest generation and verifies.
# 3. Root squashed while the site says root is root there (storage_root_uid=0): a new checkpointing
#    job is refused at its start with an error that names root squash, never run without its
#    checkpoints (t63: squashed storage set up as a site must).
. "$(dirname "$0")/lib.sh"
if [ "${VC_STORAGE:-local}" != gluster ]; then
    say "SKIP: needs the cluster on a network filesystem (vcluster up --storage=gluster), it runs on ${VC_STORAGE:-local}"
    exit 0
fi
site_timeout=60
margin=45
with_site timeout=$site_timeout on_restore_failure=hold
restore_storage() {
    "$REPO/scripts/vcluster" storage start >/dev/null 2>&1 || true
    "$REPO/scripts/vcluster" storage root-squash off >/dev/null 2>&1 || true
    "$REPO/scripts/vcluster" exec node2 stat -t "$VC_CKPT_ROOT" >/dev/null 2>&1 ||
        "$REPO/scripts/vcluster" storage remount node2 >/dev/null 2>&1 || true
}
trap 'restore_storage; cp "/tmp/$TEST_NAME.plugstack.orig" /etc/slurm/plugstack.conf' EXIT

id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 200 --min-seconds 150 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2 120
wait_output "$id" "^cg: solve"
slurm-ckpt checkpoint "$id" --quiet || { show_job "$id"; fail "first checkpoint of job $id failed"; }
say "generation 1 committed"

# --- 1. node2's client killed during the dump ---
t0=$SECONDS
slurm-ckpt checkpoint "$id" --wait $((site_timeout + margin)) --quiet >/tmp/t62-cli.out 2>&1 &
cli=$!
end=$((SECONDS + 60))
until slurm-ckpt status "$id" --json 2>/dev/null | jq -e '.[] | select(.node == "node2") | .dumping != null' >/dev/null; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "rank on node2 never began to dump"; }
    sleep 0.1
done
"$REPO/scripts/vcluster" storage kill-client node2
if wait "$cli"; then
    cat /tmp/t62-cli.out >&2
    fail "the checkpoint succeeded although node2's storage client was killed during its dump"
fi
took=$((SECONDS - t0))
[ "$took" -le $((site_timeout + margin)) ] || fail "the checkpoint took ${took}s to fail (bound $((site_timeout + margin))s)"
say "checkpoint with node2's client killed mid-dump failed in ${took}s: $(tail -1 /tmp/t62-cli.out)"
sleep 3
[ "$(job_field "$id" JobState)" = RUNNING ] || { show_job "$id"; fail "job $id stopped after the failed checkpoint"; }
[ "$(paused_count "$id")" = 0 ] || { show_job "$id"; fail "containers left frozen after the failed checkpoint"; }
[ "$(slurm-ckpt list "$id" --json | jq -r '[.[].manifest.generation] | map(tostring) | join(",")')" = 1 ] ||
    fail "only generation 1 may be visible, got: $(slurm-ckpt list "$id")"

"$REPO/scripts/vcluster" storage remount node2
slurm-ckpt checkpoint "$id" --quiet || { show_job "$id"; fail "the checkpoint after node2's client was remounted failed"; }
gens="$(slurm-ckpt list "$id" --json | jq -r '[.[].manifest.generation] | map(tostring) | join(",")')"
last="${gens##*,}"
say "with node2's client remounted the next checkpoint committed (generations $gens)"

# --- 2. the storage server gone when the job restarts ---
"$REPO/scripts/vcluster" storage stop
requeue_now "$id" node1,node2
end=$((SECONDS + site_timeout + 120))
until [ "$(job_field "$id" JobState)" = PENDING ] && job_field "$id" Reason | has -i 'held'; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "job $id was not held when its storage was gone at restart"; }
    sleep 1
done
comment="$(scontrol show job "$id" | sed -n 's/^ *Comment=//p')"
has 'checkpoint storage unavailable at restart (job held)' <<<"$comment" ||
    { show_job "$id"; fail "the held job's Comment does not say why: '$comment'"; }
[ "$(job_out "$id" | grep -c '^cg: 2 ranks')" = 1 ] || { show_job "$id"; fail "job $id was started from scratch"; }
say "job $id held at restart with the storage gone: $comment"

"$REPO/scripts/vcluster" storage start
end=$((SECONDS + 60))
until slurm-ckpt list "$id" --json >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || fail "the storage did not come back on the host's client"
    sleep 1
done
# The nodes' own clients reconnect on their own schedule: a release before they do is held again.
for n in node1 node2; do
    until "$REPO/scripts/vcluster" exec "$n" stat -t "$VC_CKPT_ROOT/.state" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || fail "the storage did not come back on $n's client"
        sleep 1
    done
done
scontrol release "$id" || fail "scontrol release $id failed"
# (Slurm delays a requeued job's start by about two minutes unless told otherwise.)
scontrol update jobid="$id" StartTime=now || fail "cannot start job $id now"
expect_ok "$id" 400
restored="$(grep -o 'restored from .*/g[0-9]*/' "/var/log/slurm-ckpt/job-$id.log" | tail -1 | sed 's|.*/g0*\([0-9]*\)/$|\1|')"
[ -n "$restored" ] && [ "$restored" -ge "$last" ] ||
    { show_job "$id"; fail "job $id was not restored from generation $last or later (restored: '${restored}')"; }
[ "$(job_out "$id" | grep -c '^cg: 2 ranks')" = 1 ] || { show_job "$id"; fail "job $id was started from scratch"; }
say "released, job $id restored from generation $restored and verified"

# --- 3. root squash ---
"$REPO/scripts/vcluster" storage root-squash on
id=$(submit -N1 -n1 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt --container-mpi=none \
    --wrap "srun /opt/ckpt-tests/mpich/cg --n 8 --mem-mb 16 --min-seconds 5 --sleep-ms 50")
wait_job "$id" 120 >/dev/null || true
"$REPO/scripts/vcluster" storage root-squash off
[ "$(job_field "$id" JobState)" != COMPLETED ] || { show_job "$id"; fail "job $id ran on root-squashed storage"; }
job_out "$id" | has -E 'root squash|squashes root' || { show_job "$id"; fail "job $id's error does not name root squash"; }
say "on root-squashed storage job $id was refused: $(job_out "$id" | grep -m1 -E 'root squash|squashes root' | cut -c1-200)"
