#!/bin/bash
# A batch script with two srun steps (issue 22), requeued during the second: when the script runs
# again from the top, the finished first step is not run again (its recorded exit code is returned
# and a line says so), the second restores from its own generations (DIR/step-1/) and verifies.
. "$(dirname "$0")/lib.sh"
RING=/opt/ckpt-tests/bin/ring
area="$VC_CKPT_ROOT/$VC_USER"
script="$JOBDIR/t54-$$.sbatch"
cat >"$script" <<EOS
#!/bin/bash
#SBATCH -N2 -n2 --open-mode=append
#SBATCH --container-image=$VC_IMAGE --container-ckpt
srun $RING --seconds 3 --sleep-ms 5
echo "t54: step 0 rc=\$?"
srun $RING --seconds 40 --sleep-ms 5
echo "t54: step 1 rc=\$?"
EOS
chown "$VC_USER:$VC_USER" "$script"
id=$(submit -w node1,node2 "$script")
cleanup() { rm -rf "${area:?}/$id" "$script"; }
trap cleanup EXIT
wait_state "$id" RUNNING 60 || fail "job $id did not start"

# --- the first step ends, the second runs ---
wait_output "$id" "^t54: step 0 rc=0" 120
wait_output "$id" "^ring: 2 ranks, .* seconds 40, " 90
end=$((SECONDS + 90))
until [ "$(slurm-ckpt status "$id" --json 2>/dev/null | jq '[.[] | select(.state=="running" and .step==1)] | length')" = 2 ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "job $id: step 1 does not run on 2 ranks"; }
    sleep 0.5
done
jq -e '.step == 0 and .exit_code == 0' "$area/$id/closed.json" >/dev/null ||
    { show_job "$id"; fail "step 0 ended but its directory is not closed with its exit code: $(cat "$area/$id/closed.json" 2>&1)"; }
# Past the launcher's ssh handshakes (see t15).
sleep 4

# --- requeued during step 1: step 0 skipped, step 1 restored ---
requeue_restored "$id" node2,node3 2
[ -f "$area/$id/step-1/g0001/manifest.json" ] || fail "step 1's checkpoint is not in $area/$id/step-1/g0001"
[ "$(jq -r .step "$area/$id/step-1/g0001/manifest.json")" = 1 ] || fail "step-1/g0001 is not step 1's"
expect_ok "$id" 180
out="$(job_out "$id")"
echo "$out" | has "slurm-ckpt: step 0 already finished with exit code 0 in job $id's run .*: not run again" ||
    { show_job "$id"; fail "job $id: no line saying step 0 is not run again"; }
[ "$(echo "$out" | grep -c '^ring: 2 ranks, .* seconds 3, ')" = 1 ] || { show_job "$id"; fail "step 0 ran again"; }
[ "$(echo "$out" | grep -c '^t54: step 0 rc=0')" = 2 ] || { show_job "$id"; fail "the rerun's skipped step 0 did not return exit code 0"; }
[ "$(echo "$out" | grep -c '^ring: 2 ranks, .* seconds 40, ')" = 1 ] || { show_job "$id"; fail "step 1 started over instead of restoring"; }
echo "$out" | has '^t54: step 1 rc=0' || { show_job "$id"; fail "step 1 did not end with 0"; }
[ "$(echo "$out" | grep -c '^VERIFICATION SUCCESSFUL')" = 2 ] || { show_job "$id"; fail "expected two verifications (step 0's first run, step 1 restored)"; }
jq -e '.step == 1 and .exit_code == 0' "$area/$id/step-1/closed.json" >/dev/null ||
    fail "step 1 ended but its directory is not closed: $(cat "$area/$id/step-1/closed.json" 2>&1)"
slurm-ckpt list "$id" | grep -c "step-1/g0001" >/dev/null || { slurm-ckpt list "$id" >&2; fail "slurm-ckpt list does not show step 1's generation"; }
[ "$(containers_of "$id")" = 0 ] || fail "job $id left containers behind"
say "requeued in step 1: step 0 not run again (exit 0 returned), step 1 restored and verified"
