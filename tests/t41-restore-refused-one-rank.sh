#!/bin/bash
# A generation whose images were altered on one rank only: that rank refuses it at restore (its
# checksum), and it tells the others at once: every rank stops within seconds instead of waiting out
# the site timeout (300 s here), the job fails naming the rank and why, and no container is left.
. "$(dirname "$0")/lib.sh"
id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 60 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2
sleep 4
slurm-ckpt checkpoint "$id" >/dev/null || { show_job "$id"; fail "checkpoint of job $id failed"; }
img="$(ls -S "$VC_CKPT_ROOT/$VC_USER/$id/g0001/rank-1/"pages-*.img 2>/dev/null | head -n1)"
[ -f "$img" ] || fail "generation 1 of job $id has no page image of rank 1"
printf 'X' | dd of="$img" bs=1 seek=100 conv=notrunc status=none
say "altered $(basename "$img") of rank 1 in g0001"
requeue_now "$id" node2,node3
wait_state "$id" RUNNING 120 || { show_job "$id"; fail "job $id did not restart"; }
start=$SECONDS
st="$(wait_job "$id" 200)" || { show_job "$id"; fail "job $id did not end within 200 s of a refused restore"; }
took=$((SECONDS - start))
[ "$st" = FAILED ] || { show_job "$id"; fail "job $id ended $st after a refused restore, expected FAILED"; }
[ "$took" -le 60 ] || { show_job "$id"; fail "job $id took ${took} s to end after rank 1 refused its images"; }
job_out "$id" | grep -q "checksum mismatch" || { show_job "$id"; fail "job $id's output does not say why rank 1 refused"; }
job_out "$id" | grep -q "rank 1 failed" || { show_job "$id"; fail "rank 0 did not name rank 1 as the cause"; }
[ "$(containers_of "$id")" = 0 ] || fail "job $id left containers behind"
say "rank 1 refused its altered images; the job ended FAILED ${took} s after its restart, naming rank 1 and the checksum"
