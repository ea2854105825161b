#!/bin/bash
# scontrol suspend/resume freezes and thaws every rank container on every node; the job still
# verifies, including suspends in the middle of collectives; CPU time does not advance while frozen.
. "$(dirname "$0")/lib.sh"
cp "$REPO/examples/cg-container.sbatch" "$JOBDIR/" && chmod 644 "$JOBDIR/cg-container.sbatch"
ring=$(submit -N2 -n4 --container-image="$VC_IMAGE" --wrap "srun /opt/ckpt-tests/bin/ring --seconds 35 --sleep-ms 2")
wait_state "$ring" RUNNING 60 && wait_containers "$ring" 4 60 || { show_job "$ring"; fail "ring job did not start 4 containers"; }
sleep 3
for secs in 1 6 12; do
    scontrol suspend "$ring"
    end=$((SECONDS + 10))
    until [ "$(paused_count "$ring")" = 4 ]; do
        [ "$SECONDS" -lt "$end" ] || { show_job "$ring"; slurm-ckpt status "$ring" >&2; fail "only $(paused_count "$ring")/4 containers frozen 10 s after suspend"; }
        sleep 0.2
    done
    before="$(cpu_ns "$ring")"
    sleep "$secs"
    after="$(cpu_ns "$ring")"
    [ "$after" = "$before" ] || fail "containers used $((after - before)) ns of CPU while suspended"
    slurm-ckpt status "$ring" --json | jq -e 'all(.[]; .state == "frozen")' >/dev/null || fail "status does not show every rank frozen"
    scontrol resume "$ring"
    end=$((SECONDS + 10))
    until [ "$(paused_count "$ring")" = 0 ]; do
        [ "$SECONDS" -lt "$end" ] || { show_job "$ring"; fail "containers still frozen 10 s after resume"; }
        sleep 0.2
    done
    say "suspended $secs s: 4/4 frozen, CPU time constant, thawed on resume"
    sleep 2
done
slurm-ckpt status "$ring" --json | jq -e '.[0].events | map(.what) | any(test("suspended"))' >/dev/null || fail "status lacks suspend events"
expect_ok "$ring" 300

cg=$(submit -N2 -n4 --container-image="$VC_IMAGE" cg-container.sbatch --n 20 --min-seconds 20 --sleep-ms 2)
wait_state "$cg" RUNNING 60 && wait_containers "$cg" 4 60 || fail "cg job did not start"
for secs in 2 4; do
    sleep 3
    scontrol suspend "$cg"; sleep "$secs"; scontrol resume "$cg"
done
expect_ok "$cg" 300
