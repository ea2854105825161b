#!/bin/bash
# A checkpoint that fails midway, because one rank's supervisor is killed (kill -9) while it runs,
# leaves the job running: the rank's guard thaws its container and fails the checkpoint, the other
# ranks stop waiting and thaw theirs, no generation is committed, and the job finishes by itself,
# verified, with exit code 0 (the orphaned rank's task waits for the launcher's end).
. "$(dirname "$0")/lib.sh"
id=$(submit -N2 -n4 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 200 --min-seconds 45 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 4 120
wait_output "$id" "^cg: solve"
victim="$(pgrep -f "^slurm-ckpt supervise .*--job $id --step [0-9]+ --rank 1 " | head -n1)"
[ -n "$victim" ] || { show_job "$id"; fail "no supervisor of rank 1 of job $id"; }
t0=$SECONDS
slurm-ckpt checkpoint "$id" --wait 200 >"$JOBDIR/ckpt-$id.txt" 2>&1 &
ckpt_pid=$!
# Kill the supervisor while CRIU dumps its container (the rank's image directory fills), the
# worst moment: container frozen, network dropped, a dump in flight in the runtime.
images="$VC_CKPT_ROOT/$VC_USER/$id/.g0001.tmp/rank-1"
end=$((SECONDS + 60))
until [ -n "$(find "$images" -mindepth 1 -print -quit 2>/dev/null)" ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "rank 1 did not start dumping"; }
    sleep 0.02
done
kill -KILL "$victim"
say "killed the supervisor of rank 1 (pid $victim) during its dump"
rc=0
wait "$ckpt_pid" || rc=$?
took=$((SECONDS - t0))
cat "$JOBDIR/ckpt-$id.txt" >&2
[ "$rc" != 0 ] || fail "slurm-ckpt checkpoint reported success although a supervisor died"
grep -q "rank 1" "$JOBDIR/ckpt-$id.txt" || fail "the checkpoint error does not name rank 1"
[ "$took" -lt 90 ] || fail "the checkpoint took ${took}s to fail: ranks waited for a dead supervisor"
say "checkpoint failed after ${took}s, naming rank 1"
end=$((SECONDS + 30))
until [ "$(paused_count "$id")" = 0 ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "containers of job $id left frozen"; }
    sleep 0.5
done
[ "$(slurm-ckpt list "$id" --json | jq length)" = 0 ] || fail "a generation was committed by a failed checkpoint"
[ "$(job_field "$id" JobState)" = RUNNING ] || { show_job "$id"; fail "job $id did not keep running"; }
expect_ok "$id" 300
job_out "$id" | has "rank 1: the container supervisor is gone" ||
    { show_job "$id"; fail "rank 1's task did not report its lost supervisor"; }
grep -q "supervisor died during a checkpoint" "/var/log/slurm-ckpt/job-$id.log" ||
    { show_job "$id"; fail "the guard of rank 1 did not act"; }
