#!/bin/bash
# Resume in a new job (issue 22): a job with --container-ckpt=DIR runs into its time limit (SIGTERM
# at the limit checkpoints it); a NEW job with the same script and DIR restores that generation, in
# the first job's identity (hostnames j<A>-rN), and verifies. Also: while job A still runs, a new
# job that would resume A's generation is refused.
#  (a) job A (--time=1): one on-demand checkpoint (SIGUSR1, what --signal=USR1@T sends; not used
#      here: Slurm sends it up to 30 s early, which with a 1-minute limit is at the job's start),
#      then job R (same DIR) fails: A is still live;
#  (b) A ends by its time limit (TIMEOUT) with the time limit's checkpoint g0002, not closed;
#  (c) job B (same script, same DIR) resumes it: every rank restored, containers named after B but
#      with A's hostnames, no program banner (a fresh start prints it), VERIFICATION SUCCESSFUL;
#      B's own new generations record A as their identity; B ends normally and closes them.
. "$(dirname "$0")/lib.sh"
RING=/opt/ckpt-tests/bin/ring
dir="t53-$$"
area="$VC_CKPT_ROOT/$VC_USER"
cleanup() { rm -rf "${area:?}/$dir"; }
trap cleanup EXIT

# ring runs for --seconds of wall time since its start: restored after A's time limit, it is past
# them and finishes after a round, verifying every message of the whole run.
script="$JOBDIR/t53-$$.sbatch"
cat >"$script" <<EOS
#!/bin/bash
#SBATCH -N2 -n2 --time=1 --open-mode=append
#SBATCH --container-image=$VC_IMAGE --container-ckpt=$dir
srun $RING --seconds 120 --sleep-ms 5
EOS
chown "$VC_USER:$VC_USER" "$script"

banner() { job_out "$1" | grep -c "^ring: 2 ranks, .* seconds 120, " || true; }

# --- (a) job A, checkpointed while it runs; a resume meanwhile is refused ---
ida=$(submit "$script")
wait_state "$ida" RUNNING 60 || fail "job $ida did not start"
wait_running_ranks "$ida" 2
# Past the launcher's ssh handshakes (see t15).
sleep 4
slurm-ckpt checkpoint "$ida" >/dev/null || { show_job "$ida"; fail "checkpoint of job $ida failed"; }
[ -f "$area/$dir/g0001/manifest.json" ] || fail "job $ida: no g0001 in $area/$dir"
[ "$(jq -r .identity_job "$area/$dir/g0001/manifest.json")" = "$ida" ] ||
    fail "g0001 of job $ida does not record it as its identity job"
idr=$(submit "$script")
st="$(wait_job "$idr" 120)" || { show_job "$idr"; fail "job $idr did not end"; }
[ "$st" = FAILED ] || { show_job "$idr"; fail "job $idr resumed job $ida's directory while $ida runs (ended $st)"; }
job_out "$idr" | has "is still in use by job $ida" ||
    { show_job "$idr"; fail "job $idr: the refusal does not name job $ida"; }
[ "$(containers_of "$idr")" = 0 ] || fail "job $idr left containers behind"
say "job $idr refused to resume while job $ida runs"

# --- (b) A reaches its time limit ---
st="$(wait_job "$ida" 180)" || { show_job "$ida"; fail "job $ida did not end"; }
[ "$st" = TIMEOUT ] || { show_job "$ida"; fail "job $ida ended $st, expected TIMEOUT"; }
newest="$(find "$area/$dir" -maxdepth 1 -name 'g0*' -printf '%f\n' | sort | tail -n1)"
[ "$newest" = g0002 ] || { show_job "$ida"; fail "job $ida: newest generation '$newest', expected the time limit's g0002"; }
if jq -e --arg i "$(jq -r .instance "$area/$dir/$newest/manifest.json")" '.instance == $i' \
    "$area/$dir/closed.json" >/dev/null 2>&1; then
    fail "job $ida ran into its time limit but closed its generations"
fi
say "job $ida: TIMEOUT, the time limit's checkpoint $newest is its newest generation"

# --- (c) job B resumes A's newest generation (a longer limit: the rest of ring's run must fit) ---
idb=$(submit --time=3 "$script")
wait_state "$idb" RUNNING 60 || { show_job "$idb"; fail "job $idb did not start"; }
wait_running_ranks "$idb" 2 120
slurm-ckpt status "$idb" --json | jq -e --arg g "restored from $newest" 'all(.[]; .events | map(.what) | any(startswith($g)))' >/dev/null ||
    { show_job "$idb"; fail "ranks of job $idb were not restored from $newest"; }
slurm-ckpt status "$idb" --json | jq -e --arg h "j$ida-r" 'all(.[]; .hostname | startswith($h))' >/dev/null ||
    { show_job "$idb"; fail "job $idb's containers do not carry job $ida's hostnames"; }
expect_ok "$idb" 180
job_out "$idb" | has "resuming generation $((10#${newest#g})) of job $ida from .*$dir" ||
    { show_job "$idb"; fail "job $idb did not say it resumes job $ida's generation"; }
[ "$(banner "$idb")" = 0 ] || { show_job "$idb"; fail "job $idb started its program over"; }
[ "$(containers_of "$idb")" = 0 ] || fail "job $idb left containers behind"
jq -e --argjson b "$idb" '.job == $b and .exit_code == 0' "$area/$dir/closed.json" >/dev/null ||
    fail "job $idb ended normally but did not close the directory: $(cat "$area/$dir/closed.json" 2>&1)"
for m in "$area/$dir"/g0*/manifest.json; do
    [ "$(jq -r .job "$m")" = "$idb" ] || continue
    [ "$(jq -r .identity_job "$m")" = "$ida" ] || fail "$m of job $idb does not carry job $ida's identity"
done
say "job $idb resumed job $ida's $newest in job $ida's identity and verified"
