#!/bin/bash
# Periodic checkpoints (--container-ckpt-interval) leave the job running; then the whole job is
# killed with SIGKILL (no chance to checkpoint: a crash), requeued, and restored from the last
# periodic generation. cg with 200 MB per rank must still verify.
# CRASH_MPI=mpich runs it with MPICH 4.2 (tests/t36).
. "$(dirname "$0")/lib.sh"
mpi="${CRASH_MPI:-openmpi}"
image="$VC_IMAGE"
[ "$mpi" = mpich ] && image="$VC_IMAGE_MPICH"
id=$(submit -N2 -n4 --open-mode=append --container-image="$image" --container-mpi="$mpi" --container-ckpt --container-ckpt-interval=1 \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 200 --min-seconds 90 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 4 120
end=$((SECONDS + 150))
until [ "$(slurm-ckpt list "$id" --json | jq length)" -ge 1 ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "no periodic checkpoint of job $id within 150 s"; }
    sleep 1
done
gen="$(slurm-ckpt list "$id" --json | jq -r '.[-1].manifest.generation')"
sleep 2
[ "$(job_field "$id" JobState)" = RUNNING ] || { show_job "$id"; fail "job $id did not keep running after its periodic checkpoint"; }
[ "$(paused_count "$id")" = 0 ] || fail "containers left frozen after a periodic checkpoint"
say "periodic generation $gen taken; job still running; crashing it (SIGKILL to everything)"
# scancel would send SIGTERM first (and the job would checkpoint): kill -9 every process of the job
# instead, as a node crash would: the MPI processes in the containers, the relays (the Slurm
# tasks) and the root supervisors.
while read -r n cid; do
    /usr/bin/docker -H "unix://$VC_RUN/$n/docker.sock" kill -s KILL "$cid" >/dev/null &
done < <(container_ids "$id")
pkill -KILL -f "^slurm-ckpt relay " || true
pkill -KILL -f "^slurm-ckpt supervise .*--job $id " || true
wait
st="$(wait_job "$id" 120)" || { show_job "$id"; fail "job $id did not die from SIGKILL"; }
say "job ended $st"
[ "$(slurm-ckpt list "$id" --json | jq -r '.[-1].manifest.generation')" = "$gen" ] ||
    fail "a generation newer than $gen appeared although the job was killed"
requeue_now "$id"
expect_ok "$id" 400
grep -q "restored from .*/g$(printf %04d "$gen")/" "/var/log/slurm-ckpt/job-$id.log" ||
    { show_job "$id"; fail "job $id was not restored from periodic generation $gen"; }
