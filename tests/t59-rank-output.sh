#!/bin/bash
# Output split per rank as in a native step (issue 22): each MPI rank writes to its own container's
# output, which its own Slurm task prints, so `srun -l` labels every line with the rank that wrote
# it and `srun --output=%t` gives one file per rank, while the MPI launcher's own messages stay
# rank 0's. After a checkpoint and a requeue onto other nodes, the restored ranks' new output is
# still split. Both MPI families (MATRIX_MPI="openmpi mpich" by default); 3 ranks on 2 nodes.
. "$(dirname "$0")/lib.sh"

# The rank program: not an MPI program (both launchers start any program). Each rank prints its MPI
# rank (Open MPI: OMPI_COMM_WORLD_RANK, hydra: PMI_RANK) and its task's SLURM_PROCID.
RANK='r=${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-unset}}'
ticks="$JOBDIR/t59-ticks.sh"
cat >"$ticks" <<EOF
#!/bin/sh
srun -l sh -c '$RANK; i=0; while [ \$i -lt 40 ]; do echo "tick mpi=\$r procid=\$SLURM_PROCID n=\$i"; i=\$((i + 1)); sleep 1; done' &&
    echo "VERIFICATION SUCCESSFUL"
EOF
pertask="$JOBDIR/t59-pertask.sh"
cat >"$pertask" <<EOF
#!/bin/sh
srun --output='$JOBDIR/t59-%j-%t.out' sh -c '$RANK; echo "hello mpi=\$r procid=\$SLURM_PROCID"; echo "stderr mpi=\$r" >&2; sleep 3; exit 3'
EOF
merged="$JOBDIR/t59-merged.sh"
cat >"$merged" <<EOF
#!/bin/sh
srun -l sh -c '$RANK; echo "hello mpi=\$r"' && echo "VERIFICATION SUCCESSFUL"
EOF
chmod 755 "$ticks" "$pertask" "$merged"

# tick_lines ID FROM: the job's tick lines from output line FROM on.
tick_lines() { job_out "$1" | tail -n +"$2" | grep -E '^ *[0-9]+: tick ' || true; }

# split_ok ID FROM: from line FROM on, every rank 0..2 has a tick line, and every tick line is
# labelled with the rank (and task) that printed it.
split_ok() {
    local lines r
    lines="$(tick_lines "$1" "$2")"
    for r in 0 1 2; do
        grep -qE "^ *$r: tick mpi=$r procid=$r " <<<"$lines" || return 1
    done
    # (no grep -q at the end of a pipe: under pipefail its early exit fails the pipe)
    [ -z "$(grep -vE '^ *([0-9]+): tick mpi=\1 procid=\1 ' <<<"$lines")" ]
}

# wait_split ID FROM [TIMEOUT]
wait_split() {
    local end=$((SECONDS + ${3:-90}))
    until split_ok "$1" "$2"; do
        if [ "$SECONDS" -ge "$end" ]; then
            show_job "$1"
            tick_lines "$1" "$2" | grep -vE '^ *([0-9]+): tick mpi=\1 procid=\1 ' | head -5 >&2 || true
            fail "job $1: tick lines from output line $2 on are not split by rank (mislabelled lines above, if any)"
        fi
        sleep 1
    done
}

run_family() {
    local mpi="$1" image="$VC_IMAGE" id n st r f
    [ "$mpi" = mpich ] && image="$VC_IMAGE_MPICH"

    # 1. srun -l: every rank's lines carry its own label, before and after a restore elsewhere.
    id=$(submit -w node1,node2 -N2 -n3 --open-mode=append --container-image="$image" \
        --container-mpi="$mpi" --container-ckpt "$ticks")
    wait_state "$id" RUNNING 60 || { show_job "$id"; fail "$mpi: job $id did not start"; }
    wait_running_ranks "$id" 3
    wait_split "$id" 1 90
    say "$mpi: srun -l labels each rank's own lines ($(rank_nodes "$id"))"
    requeue_restored "$id" node2,node3 3
    # The old run's output is complete once the new run's ranks run: what follows is the restored
    # ranks' (a restart instead of a restore would count from n=0 again).
    n=$(($(job_out "$id" | wc -l) + 1))
    wait_split "$id" "$n" 90
    if grep -q ' n=0$' <<<"$(tick_lines "$id" "$n")"; then
        show_job "$id"
        fail "$mpi: ranks started over after the requeue"
    fi
    say "$mpi: restored on $(rank_nodes "$id"): output still split by rank"
    expect_ok "$id" 180

    # 2. --output=%t: one file per rank holding its stdout and stderr; the launcher's report of
    # the failed ranks is rank 0's.
    id=$(submit -w node1,node2 -N2 -n3 --container-image="$image" --container-mpi="$mpi" "$pertask")
    st=$(wait_job "$id" 180) || { show_job "$id"; fail "$mpi: job $id did not end"; }
    [ "$st" != COMPLETED ] || { show_job "$id"; fail "$mpi: job $id completed although every rank exited 3"; }
    for r in 0 1 2; do
        f="$JOBDIR/t59-$id-$r.out"
        [ -f "$f" ] || { show_job "$id"; fail "$mpi: no per-task file $f"; }
        grep -q "^hello mpi=$r procid=$r$" "$f" && grep -q "^stderr mpi=$r$" "$f" ||
            { show_job "$id"; cat "$f" >&2; fail "$mpi: $f lacks rank $r's stdout or stderr"; }
        [ -z "$(grep -E '^(hello|stderr) mpi=' "$f" | grep -v "mpi=$r\b")" ] ||
            { cat "$f" >&2; fail "$mpi: $f holds another rank's lines"; }
    done
    # mpirun reports ranks that exited non-zero; hydra's mpiexec only passes the exit code on.
    if [ "$mpi" = openmpi ]; then
        grep -qiE 'mpirun|exit code|non-zero' "$JOBDIR/t59-$id-0.out" ||
            { cat "$JOBDIR/t59-$id-0.out" >&2; fail "$mpi: the launcher's report is not in rank 0's file"; }
    fi
    ! grep -q "slurm-ckpt: rank" "$JOBDIR"/t59-"$id"-*.out ||
        { cat "$JOBDIR"/t59-"$id"-*.out >&2; fail "$mpi: a rank could not write to its own output"; }
    say "$mpi: --output=%t: one file per rank, nothing lost"
    rm -f "$JOBDIR/t59-$id-"*.out
}

for mpi in ${MATRIX_MPI:-openmpi mpich}; do
    run_family "$mpi"
done

# 3. The site's opt-out: every rank's output comes through the launcher, as rank 0's.
with_site split_rank_output=no
id=$(submit -w node1,node2 -N2 -n3 --container-image="$VC_IMAGE" --container-mpi=openmpi "$merged")
expect_ok "$id" 120
for r in 0 1 2; do
    grep -qE "^ *0: hello mpi=$r$" <<<"$(job_out "$id")" ||
        { show_job "$id"; fail "split_rank_output=no: rank $r's line is not rank 0's"; }
done
say "split_rank_output=no: every rank's output is rank 0's"
