#!/bin/bash
# A checkpoint requested while the MPI launch is still under way succeeds (soak cycle 32: sshd's
# pre-authentication child, whose descriptor table is full by design, made CRIU's parasite fail
# with "Can't create memfd in victim: Too many open files"). Every rank now waits until its
# container has no full table and all ranks meet before any hold (docs/ARCHITECTURE.md, protocol
# step 0). 3-rank Open MPI rings over two nodes, one checkpoint each at staggered delays after the
# ranks run (0, 0.3, ... 1.5 s); every one must succeed. One more request as soon as Slurm runs the
# job (the containers may not exist yet) must succeed or be refused clearly. The first job is
# requeued and must restore and verify.
. "$(dirname "$0")/lib.sh"
t0=$SECONDS

# ranks_running ID N: poll tightly (0.1 s) until N ranks of the job run (the launch begins then).
ranks_running() {
    local end=$((SECONDS + 90))
    until [ "$(slurm-ckpt status "$1" --json 2>/dev/null | jq '[.[] | select(.state=="running")] | length')" = "$2" ]; do
        [ "$SECONDS" -lt "$end" ] || { show_job "$1"; fail "job $1: $2 running ranks expected"; }
        sleep 0.1
    done
}

# ring_job NODES SECONDS: a 3-rank Open MPI ring on two nodes; prints the job id.
ring_job() {
    submit -w "$1" -N2 -n3 --open-mode=append --container-image="$VC_IMAGE" --container-mpi=openmpi \
        --container-ckpt --wrap "srun /opt/ckpt-tests/bin/ring --seconds $2 --sleep-ms 5"
}

# why_failed ID: the job's CRIU errors, to tell this failure from another.
why_failed() {
    show_job "$1"
    grep -hE "Too many open files|full descriptor table|Can't infect|Error \(" \
        "/var/log/slurm-ckpt/job-$1.log" /var/log/slurm-ckpt/runtime.log 2>/dev/null | tail -n 12 >&2 || true
}

pairs=("node1,node2" "node2,node3" "node1,node3")
restored=""
waited=0
n=0
for d in 0 0.3 0.6 0.9 1.2 1.5; do
    nodes="${pairs[$((n % 3))]}"
    # The first job runs on to be restored (long enough to still run when the loop is over); the
    # others are cancelled after their checkpoint.
    secs=300
    [ "$n" != 0 ] || secs=120
    id=$(ring_job "$nodes" "$secs")
    wait_state "$id" RUNNING 90 || { show_job "$id"; fail "job $id did not start"; }
    ranks_running "$id" 3
    sleep "$d"
    s=$SECONDS
    slurm-ckpt checkpoint "$id" --wait 90 --quiet ||
        { why_failed "$id"; fail "checkpoint of job $id requested ${d}s after its ranks ran failed"; }
    if grep -q "full descriptor table to clear" "/var/log/slurm-ckpt/job-$id.log" 2>/dev/null; then
        waited=$((waited + 1))
    fi
    say "job $id on $nodes: checkpoint ${d}s after the ranks ran: ok in $((SECONDS - s))s"
    if [ "$n" = 0 ]; then
        restored="$id"
        requeue_now "$id" node2,node3
    else
        scancel "$id" || true
    fi
    n=$((n + 1))
done
say "$waited of $n checkpoints waited for an ssh handshake"

# As early as possible: the moment Slurm runs the job, before its containers may exist.
id=$(ring_job node1,node2 300)
wait_state "$id" RUNNING 90 || { show_job "$id"; fail "job $id did not start"; }
if out="$(slurm-ckpt checkpoint "$id" --wait 90 --quiet 2>&1)"; then
    say "job $id: checkpoint at job start: ok"
elif has -E "no running rank containers" <<<"$out"; then
    say "job $id: checkpoint at job start refused clearly: $out"
else
    echo "$out" >&2
    why_failed "$id"
    fail "checkpoint of job $id at its start neither succeeded nor was refused clearly"
fi
scancel "$id" || true

# The first job: restored from its generation on other nodes, and its result verified.
wait_state "$restored" RUNNING 150 || { show_job "$restored"; fail "job $restored did not restart"; }
wait_running_ranks "$restored" 3 120
slurm-ckpt status "$restored" --json | jq -e 'all(.[]; .events | map(.what) | any(startswith("restored from")))' >/dev/null ||
    { show_job "$restored"; fail "ranks of job $restored were not restored from a checkpoint"; }
expect_ok "$restored" 180
say "done in $((SECONDS - t0))s"
