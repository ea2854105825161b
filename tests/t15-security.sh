#!/bin/bash
# Security (issue 14), two users: nothing a user names reaches root's daemon unchecked, and root
# restores only authenticated generations of the same job.
#  - another user's checkpoint, a closed directory, the service's own directories: refused at submit;
#  - a missing mount source: refused at start, and not created on the node;
#  - a hostile PWD: refused at start by the helper (the plugin's submit check can be bypassed);
#  - gc never removes a running job's directory, whatever its name;
#  - a generation copied from another job (another job instance): never restored; the job starts
#    fresh, saying so, and runs its own program;
#  - a generation altered on the storage: refused, the job restarts from the previous good one.
. "$(dirname "$0")/lib.sh"
U2="$VC_USER2"
JOBDIR2="/home/$U2/jobs"
mkdir -p "$JOBDIR2" && chown "$U2:$U2" "$JOBDIR2"
RING=/opt/ckpt-tests/bin/ring
SECRET=/root/.t15-secret
MISSING="/etc/t15-missing-$$"
area="$VC_CKPT_ROOT/$VC_USER"
cleanup() {
    rm -rf "$SECRET" "$MISSING" "$area/t15-a-$$" "$area/t15-b-$$" "$area/t15-c-$$"
}
trap cleanup EXIT

# submit2 ARGS...: sbatch as the second user; prints sbatch's output (job id or error), keeps rc.
submit2() { (cd "$JOBDIR2" && runuser -u "$U2" -- sbatch --parsable -o "$JOBDIR2/%j.out" -e "$JOBDIR2/%j.out" "$@" 2>&1); }
out2() { cat "$JOBDIR2/$1.out" 2>/dev/null || true; }

# refused_at_submit MOUNT WORD: sbatch by the second user fails, naming WORD.
refused_at_submit() {
    local out
    if out="$(submit2 -N1 -n1 --container-image="$VC_IMAGE" --container-mounts="$1" --wrap "srun true")"; then
        scancel "$out" 2>/dev/null || true
        fail "mount $1 was accepted at submit (job $out)"
    fi
    echo "$out" | has "$2" || fail "mount $1 refused without naming '$2': $out"
    say "refused at submit: $1 ($(echo "$out" | grep -o "$2" | head -n1))"
}

# failed_at_start ID WORD: the second user's job failed before running, its output naming WORD.
failed_at_start() {
    local st
    st="$(wait_job "$1" 120)" || fail "job $1 did not end"
    [ "$st" = FAILED ] || { show_job "$1"; out2 "$1" >&2; fail "job $1 ended $st, expected FAILED"; }
    out2 "$1" | has "$2" || { out2 "$1" >&2; fail "job $1 failed without naming '$2'"; }
    [ "$(containers_of "$1")" = 0 ] || fail "job $1 left containers behind"
    say "job $1 refused at start: $(out2 "$1" | grep -o "$2.*" | head -n1 | cut -c1-120)"
}

# --- the first user's job, with two generations ---
id=$(submit -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt="t15-a-$$" \
    --wrap "srun $RING --seconds 50 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2
# Past the launcher's ssh handshakes: sshd's pre-auth child runs with RLIMIT_NOFILE 0, where CRIU's
# parasite cannot open its memfd ("Too many open files").
sleep 4
slurm-ckpt checkpoint "$id" >/dev/null || { show_job "$id"; fail "checkpoint 1 of job $id failed"; }
slurm-ckpt checkpoint "$id" >/dev/null || { show_job "$id"; fail "checkpoint 2 of job $id failed"; }
# gc: a running job's custom-named directory stays, also one whose first checkpoint is still being
# written (its owner marker and a temporary generation, nothing committed).
mkdir -p "$area/t15-c-$$/.g0001.tmp"
cp -a "$area/t15-a-$$"/.owner-job-* "$area/t15-c-$$/" || fail "job $id left no owner marker"
slurm-ckpt gc >/tmp/t15-gc.out 2>&1 || { cat /tmp/t15-gc.out >&2; fail "slurm-ckpt gc failed"; }
for d in "t15-a-$$/g0002" "t15-c-$$/.g0001.tmp"; do
    [ -d "$area/$d" ] || { cat /tmp/t15-gc.out >&2; fail "gc removed $d of running job $id"; }
done
say "gc kept the running job's directories: $(grep -c . /tmp/t15-gc.out) line(s) of reasons"
[ -f "$area/t15-a-$$/g0002/manifest.json.mac" ] || fail "generation g0002 has no MAC"

# --- the second user names what is not theirs ---
refused_at_submit "$area/t15-a-$$/g0001:/loot:ro" "checkpoint root"
mkdir -p "$SECRET/inner" && chmod 700 "$SECRET" && echo secret >"$SECRET/inner/file"
refused_at_submit "$SECRET/inner:/loot:ro" "cannot reach"
refused_at_submit "/run/slurm-ckpt:/loot:ro" "runtime directory"
refused_at_submit "/etc/munge:/loot:ro" "munge"
id2=$(submit2 -N1 -n1 --container-image="$VC_IMAGE" --container-mounts="$MISSING/sub:/loot" --wrap "srun true")
failed_at_start "$id2" "does not exist"
[ ! -e "$MISSING" ] || fail "the node created $MISSING for a user's mount"
id3=$(submit2 -N1 -n1 --container-image="$VC_IMAGE" \
    --wrap "cd /tmp && PWD=$area/t15-a-$$ srun true")
failed_at_start "$id3" "working directory"

# --- a generation of another job, copied into a job's directory ---
mkdir -p "$area/t15-b-$$"
cp -a "$area/t15-a-$$/g0001" "$area/t15-b-$$/g0001"
idb=$(submit -N2 -n2 --container-image="$VC_IMAGE" --container-ckpt="t15-b-$$" --wrap "srun $RING --seconds 5")
expect_ok "$idb" 120
job_out "$idb" | has "generation 1 skipped: it was taken by job instance .* (job $id)" ||
    { show_job "$idb"; fail "job $idb: the skipped generation is not named with job $id"; }
job_out "$idb" | has "starting fresh" || { show_job "$idb"; fail "job $idb did not say it starts fresh"; }
# Only a fresh start prints the program's banner with its own arguments.
job_out "$idb" | has "^ring: 2 ranks, .* seconds 5, " || { show_job "$idb"; fail "job $idb did not run its own program"; }
[ "$(containers_of "$idb")" = 0 ] || fail "job $idb left containers behind"
say "foreign generation skipped: $(job_out "$idb" | grep -o 'generation 1 skipped.*' | head -n1 | cut -c1-100)"

# --- a generation altered on the storage between checkpoint and restore ---
scontrol requeue "$id" || fail "scontrol requeue $id failed"
end=$((SECONDS + 120))
until [ "$(job_field "$id" JobState)" = PENDING ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "job $id not pending after requeue"; }
    sleep 0.5
done
newest="$(find "$area/t15-a-$$" -maxdepth 1 -name 'g0*' -printf '%f\n' | sort | tail -n1)"
[ "$newest" = g0003 ] || { show_job "$id"; fail "expected g0003 after the requeue's checkpoint, have $newest"; }
sed -i 's/"policy": "[^"]*"/"policy": "cf-rf"/' "$area/t15-a-$$/g0003/manifest.json"
scontrol update jobid="$id" StartTime=now || fail "cannot release job $id"
wait_state "$id" RUNNING 120 || { show_job "$id"; fail "job $id did not restart"; }
wait_running_ranks "$id" 2
slurm-ckpt status "$id" --json | jq -e 'all(.[]; .events | map(.what) | any(startswith("restored from g0002")))' >/dev/null ||
    { show_job "$id"; fail "job $id was not restored from g0002 (the good generation before the altered one)"; }
job_out "$id" | has "generation 3 refused.*MAC does not match" ||
    { show_job "$id"; fail "job $id: the altered generation's refusal is not in the job's output"; }
say "altered g0003 refused; restored from g0002"
expect_ok "$id" 300
