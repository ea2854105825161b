#!/bin/bash
# The storage server stops while a requeued job is being restored (--storage=gluster only): the
# restore fails, the job is held (site on_restore_failure=hold) with the reason in its Comment and
# is never started from scratch; released once the storage is back, it restores and verifies.
# Opt-in (SLURM_CKPT_RESTORE_STORAGE=1) until it has run in the CI.
. "$(dirname "$0")/lib.sh"
if [ "${SLURM_CKPT_RESTORE_STORAGE:-0}" != 1 ]; then
    say "SKIP: opt-in (SLURM_CKPT_RESTORE_STORAGE=1 on vcluster up --storage=gluster)"
    exit 0
fi
if [ "${VC_STORAGE:-local}" != gluster ]; then
    say "SKIP: needs the cluster on a network filesystem (vcluster up --storage=gluster), it runs on ${VC_STORAGE:-local}"
    exit 0
fi
with_site timeout=30 on_restore_failure=hold
trap '"$REPO/scripts/vcluster" storage start >/dev/null 2>&1 || true; cp "/tmp/$TEST_NAME.plugstack.orig" /etc/slurm/plugstack.conf' EXIT

id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 300 --min-seconds 90 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2 120
wait_output "$id" "^cg: solve"
slurm-ckpt checkpoint "$id" --quiet || { show_job "$id"; fail "checkpoint of job $id failed"; }
say "generation 1 committed"

# Requeued onto other nodes (checkpointing once more on the way out); the storage is stopped as soon
# as a rank's record says its restore began.
requeue_now "$id" node2,node3
end=$((SECONDS + 180))
until slurm-ckpt status "$id" --json 2>/dev/null | jq -e 'any(.[]; .restoring != null)' >/dev/null; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "job $id's restore never began"; }
    sleep 0.05
done
phase="$(slurm-ckpt status "$id" --json | jq -r '[.[] | .restoring.phase // empty] | join(",")')"
"$REPO/scripts/vcluster" storage stop
say "storage stopped while the ranks were restoring (phases: $phase)"

end=$((SECONDS + 180))
until [ "$(job_field "$id" JobState)" = PENDING ] && job_field "$id" Reason | has -i 'held'; do
    st="$(job_field "$id" JobState)"
    case "$st" in COMPLETED | FAILED | CANCELLED) show_job "$id"; fail "job $id ended $st instead of being held" ;; esac
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "job $id was not held after its restore met a stopped storage (state $st)"; }
    sleep 1
done
comment="$(scontrol show job "$id" | sed -n 's/^ *Comment=//p')"
has 'slurm-ckpt' <<<"$comment" || { show_job "$id"; fail "the held job's Comment does not say why: '$comment'"; }
[ "$(job_out "$id" | grep -c '^cg: 2 ranks')" = 1 ] || { show_job "$id"; fail "job $id was started from scratch"; }
say "job $id held: $(cut -c1-200 <<<"$comment")"

"$REPO/scripts/vcluster" storage start
# (A client whose server has been away for a while reconnects at its own, growing interval.)
# A GlusterFS client whose server was away for minutes retries ever more slowly (one took over
# 240 s): a node's client not back after 120 s is remounted, as an admin would.
end=$((SECONDS + 120))
for n in $VC_NODES; do
    until storage_client_up "$n"; do
        if [ "$SECONDS" -ge "$end" ]; then
            say "$n's client not back 120 s after the server: remounting it"
            "$REPO/scripts/vcluster" storage remount "$n"
            storage_clients_back 30 "$n"
        fi
        sleep 1
    done
done
scontrol release "$id" || fail "scontrol release $id failed"
scontrol update jobid="$id" StartTime=now || fail "cannot start job $id now"
expect_ok "$id" 400
[ "$(job_out "$id" | grep -c '^cg: 2 ranks')" = 1 ] || { show_job "$id"; fail "job $id was started from scratch"; }
say "released, job $id restored and verified"
