#!/bin/bash
# A job in the high-priority partition preempts a container job in "low" (PreemptMode=SUSPEND,GANG):
# the low job's containers are frozen while the high job runs, then resume, and it verifies.
. "$(dirname "$0")/lib.sh"
low=$(submit -p low -w node1,node2 -N2 -n8 --container-image="$VC_IMAGE" \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 25 --sleep-ms 5")
wait_state "$low" RUNNING 60 && wait_containers "$low" 8 90 || { show_job "$low"; fail "low job did not start 8 containers"; }
sleep 3
high=$(submit -p high -w node1,node2 -N2 -n8 --wrap "srun sleep 12")
wait_state "$low" SUSPENDED 60 || { show_job "$low"; fail "low job was not suspended by the high-priority job"; }
end=$((SECONDS + 15))
until [ "$(paused_count "$low")" = 8 ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$low"; slurm-ckpt status "$low" >&2; fail "only $(paused_count "$low")/8 containers of the preempted job are frozen"; }
    sleep 0.3
done
say "preempted job $low: 8/8 containers frozen while job $high runs"
st="$(wait_job "$high" 120)"; [ "$st" = COMPLETED ] || fail "high job ended $st"
wait_state "$low" RUNNING 120 || fail "low job did not resume after the high job"
expect_ok "$low" 300
