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
# The requeue checkpoints the job (its newest generation) and holds it: alter that one.
requeuehold_now "$id"
gen="$(ls -d "$VC_CKPT_ROOT/$VC_USER/$id"/g[0-9]* 2>/dev/null | tail -n1)"
[ -n "$gen" ] || { show_job "$id"; fail "job $id has no generation after its requeue"; }
img="$(ls -S "$gen/rank-1/"pages-*.img 2>/dev/null | head -n1)"
[ -f "$img" ] || fail "$gen has no page image of rank 1"
printf 'X' | dd of="$img" bs=1 seek=100 conv=notrunc status=none
say "altered $(basename "$img") of rank 1 in $(basename "$gen")"
scontrol update jobid="$id" NodeList=node2,node3 StartTime=now || fail "cannot move job $id"
scontrol release "$id" || fail "cannot release job $id"
# The restarted job may be over within the second it started (no RUNNING state to see): wait for
# its end, then compare its own start and end times.
st="$(wait_job "$id" 300)" || { show_job "$id"; fail "job $id did not end within 300 s of its release"; }
[ "$(job_field "$id" Restarts)" -ge 1 ] 2>/dev/null || { show_job "$id"; fail "job $id did not restart"; }
took=$(($(date -d "$(job_field "$id" EndTime)" +%s) - $(date -d "$(job_field "$id" StartTime)" +%s)))
[ "$st" = FAILED ] || { show_job "$id"; fail "job $id ended $st after a refused restore, expected FAILED"; }
[ "$took" -le 60 ] || { show_job "$id"; fail "job $id took ${took} s to end after rank 1 refused its images"; }
job_out "$id" | has "checksum mismatch" || { show_job "$id"; fail "job $id's output does not say why rank 1 refused"; }
job_out "$id" | has "rank 1 failed" || { show_job "$id"; fail "rank 0 did not name rank 1 as the cause"; }
[ "$(containers_of "$id")" = 0 ] || fail "job $id left containers behind"
say "rank 1 refused its altered images; the job ended FAILED ${took} s after its restart, naming rank 1 and the checksum"
