#!/bin/bash
# A generation restores only into the job instance that made it (issue 23):
#  (a) job A is checkpointed, then completes normally (its directory is closed); a new job B with a
#      recycled id — simulated by copying A's directory, as root, into the directory B names — and a
#      different program runs its own program and verifies: A's generation is skipped, B starts
#      fresh and says so;
#  (b) a generation of this job's own instance that is refused for another reason (the instance
#      set by hand to A's inside an allocation, A's closed marker removed: another job, another
#      program) still fails the job: it never silently starts over from its own unusable state;
#  (c) a requeued job keeps its instance and restores its own generation; once it has completed,
#      a requeue of the same job starts over: its generations are closed.
. "$(dirname "$0")/lib.sh"
RING=/opt/ckpt-tests/bin/ring
area="$VC_CKPT_ROOT/$VC_USER"
cleanup() { rm -rf "$area/t16-a-$$" "$area/t16-b-$$" "$area/t16-c-$$"; }
trap cleanup EXIT

# banner ID SECONDS: the job's output has the program's start banner with its own --seconds (only a
# fresh start prints it: a restored program is past it).
banner() { job_out "$1" | grep -c "^ring: 2 ranks, .* seconds $2, " || true; }

# never_restored ID: no rank of the running job was restored from a checkpoint.
never_restored() {
    slurm-ckpt status "$1" --json | jq -e 'all(.[]; .events | map(.what) | any(startswith("restored from")) | not)' >/dev/null ||
        { show_job "$1"; fail "job $1 was restored from a checkpoint"; }
}

# --- (a) job A: one generation, then a normal end ---
ida=$(submit -N2 -n2 --container-image="$VC_IMAGE" --container-ckpt="t16-a-$$" \
    --wrap "srun $RING --seconds 25 --sleep-ms 5")
wait_state "$ida" RUNNING 60 || fail "job $ida did not start"
wait_running_ranks "$ida" 2
# Past the launcher's ssh handshakes (see t15).
sleep 4
slurm-ckpt checkpoint "$ida" >/dev/null || { show_job "$ida"; fail "checkpoint of job $ida failed"; }
expect_ok "$ida" 120
inst_a="$(jq -r .instance "$area/t16-a-$$/g0001/manifest.json")"
[[ "$inst_a" =~ ^[0-9a-f]{32}$ ]] || fail "generation g0001 of job $ida records no job instance ($inst_a)"
jq -e --arg i "$inst_a" '.instance == $i and .through == 1' "$area/t16-a-$$/closed.json" >/dev/null ||
    fail "job $ida ended normally but its directory is not closed: $(cat "$area/t16-a-$$/closed.json" 2>&1)"
[ -f "$area/t16-a-$$/closed.json.mac" ] || fail "the closed marker of job $ida has no MAC"
slurm-ckpt list "$ida" | has "${inst_a:0:8} *closed" ||
    { slurm-ckpt list "$ida" >&2; fail "slurm-ckpt list does not show job $ida's generation as closed"; }
say "job $ida (instance ${inst_a:0:8}) closed its generation g0001"

# --- (a) job B: A's directory under the name B uses, another program ---
cp -a "$area/t16-a-$$" "$area/t16-b-$$"
idb=$(submit -N2 -n2 --container-image="$VC_IMAGE" --container-ckpt="t16-b-$$" \
    --wrap "srun $RING --seconds 20 --sleep-ms 5")
wait_state "$idb" RUNNING 60 || { show_job "$idb"; fail "job $idb did not start"; }
wait_running_ranks "$idb" 2
never_restored "$idb"
expect_ok "$idb" 120
[ "$(banner "$idb" 20)" = 1 ] || { show_job "$idb"; fail "job $idb did not run its own program (ring --seconds 20)"; }
job_out "$idb" | has "generation 1 skipped: it was taken by job instance ${inst_a:0:8}… (job $ida)" ||
    { show_job "$idb"; fail "job $idb: A's generation is not named as skipped (another job instance)"; }
job_out "$idb" | has "starting fresh: .*t16-b-$$" ||
    { show_job "$idb"; fail "job $idb did not say it starts fresh in its directory"; }
say "job $idb skipped job $ida's generation and ran its own program"

# --- (b) this instance's generation, refused for another reason: the job fails ---
cp -a "$area/t16-a-$$" "$area/t16-c-$$"
rm -f "$area/t16-c-$$/closed.json" "$area/t16-c-$$/closed.json.mac"
idc=$(submit -N2 -n2 --container-image="$VC_IMAGE" --container-ckpt="t16-c-$$" \
    --wrap "export SLURM_CKPT_JOB_INSTANCE=$inst_a; srun $RING --seconds 20 --sleep-ms 5")
st="$(wait_job "$idc" 120)" || fail "job $idc did not end"
[ "$st" = FAILED ] || { show_job "$idc"; fail "job $idc with an unusable generation of its own instance ended $st, expected FAILED"; }
job_out "$idc" | has "generation 1 refused: it belongs to job $ida" ||
    { show_job "$idc"; fail "job $idc: the refusal does not name job $ida"; }
job_out "$idc" | has "no usable checkpoint generation" || { show_job "$idc"; fail "job $idc did not say why it failed"; }
[ "$(banner "$idc" 20)" = 0 ] || { show_job "$idc"; fail "job $idc started over instead of failing"; }
[ "$(containers_of "$idc")" = 0 ] || fail "job $idc left containers behind"
say "job $idc failed: its own instance's generation was refused (another job)"

# --- (c) a requeued job restores its own generation; a requeue after its end starts over ---
idd=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun $RING --seconds 30 --sleep-ms 5")
wait_state "$idd" RUNNING 60 || fail "job $idd did not start"
wait_running_ranks "$idd" 2
sleep 4
requeue_restored "$idd" node2,node3 2
slurm-ckpt list "$idd" | has "restart point" ||
    { slurm-ckpt list "$idd" >&2; fail "slurm-ckpt list does not show job $idd's generation as a restart point"; }
expect_ok "$idd" 180
inst_d="$(slurm-ckpt list "$idd" --json | jq -r '[.[].manifest.instance] | unique | if length == 1 then .[0] else "several" end')"
[[ "$inst_d" =~ ^[0-9a-f]{32}$ ]] || fail "job $idd's generations do not share one job instance ($inst_d)"
[ "$inst_d" != "$inst_a" ] || fail "jobs $ida and $idd have the same job instance"
slurm-ckpt list "$idd" --json | jq -e 'all(.[]; .state == "closed")' >/dev/null ||
    { slurm-ckpt list "$idd" >&2; fail "job $idd completed but its generations are not closed"; }
say "job $idd (instance ${inst_d:0:8}) restored its own generation across the requeue, then closed it"
requeue_now "$idd"
wait_state "$idd" RUNNING 120 || { show_job "$idd"; fail "completed job $idd did not run again after its requeue"; }
wait_running_ranks "$idd" 2
never_restored "$idd"
expect_ok "$idd" 180
[ "$(banner "$idd" 30)" = 2 ] || { show_job "$idd"; fail "job $idd did not start over after its requeue"; }
job_out "$idd" | has "skipped: closed: the job ended normally at" ||
    { show_job "$idd"; fail "job $idd: its closed generation is not named as skipped"; }
say "the requeue of completed job $idd started over (closed generation skipped)"
