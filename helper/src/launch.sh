#!/bin/sh
# In-container init of every rank container (written by slurm-ckpt into /.slurm-ckpt/launch).
# usage: launch RANK MPI NTASKS PROGRAM [ARGS...]
#        launch --rank-env PROGRAM [ARGS...]   (what the MPI launcher starts in each rank container)
# Rank 0 runs the MPI launcher, which reaches the other ranks' containers over ssh; every other rank
# runs sshd as the job user. Everything must descend from this init process: CRIU checkpoints the
# init's process tree only (processes started by `docker exec` would be silently lost).
set -e
D=/.slurm-ckpt

# Point this rank's stdout/stderr at its own container's output (the container init's, PID 1), so
# its supervisor streams it to this rank's Slurm task: `srun -l` and `--output=%t` split the output
# by rank as in a native step, instead of everything arriving through the MPI launcher as rank 0's.
# The launcher's pipes stay open, silent, until the rank exits (parked on two free descriptors):
# hydra's proxy stops serving PMI once every child's stdout and stderr are closed. Reopening
# /proc/1/fd/N gives a new description of the same pipe Docker reads, which CRIU restores onto the
# new container's pipe as it does PID 1's own (runc passes it as an inherited pipe).
own_output() {
    { true >/proc/1/fd/1 && true >/proc/1/fd/2; } 2>/dev/null || {
        echo "slurm-ckpt: rank ${SLURM_PROCID:-?}: cannot write to its container's output (/proc/1/fd/1); its output comes through the MPI launcher (rank 0)" >&2
        return 0
    }
    # Two descriptors this process does not hold (hydra's PMI_FD, for one, is inherited); sh
    # redirections take single digits only.
    a=""; b=""
    for n in 9 8 7 6 5 4 3; do
        if [ -L "/proc/$$/fd/$n" ]; then continue; fi
        if [ -z "$a" ]; then a=$n; elif [ -z "$b" ]; then b=$n; fi
    done
    if [ -z "$b" ]; then
        echo "slurm-ckpt: rank ${SLURM_PROCID:-?}: no free descriptor to keep the MPI launcher's pipes on; its output comes through the MPI launcher (rank 0)" >&2
        return 0
    fi
    eval "exec $a>&1 $b>&2"
    exec >/proc/1/fd/1 2>/proc/1/fd/2
}

if [ "$1" = --rank-env ]; then
    # An MPI rank: the launcher passed on rank 0's environment; this container's own Slurm values
    # (SLURM_PROCID, ...) are in env-r<R>, R from the hostname j<JOB>-r<R>.
    shift
    h=$(cat /etc/hostname 2>/dev/null || hostname)
    f="$D/env-r${h##*-r}"
    [ ! -f "$f" ] || . "$f"
    # Rank 0's container runs the MPI launcher as its init: its output is rank 0's already (and
    # hydra leaves no free descriptor there).
    [ "${SLURM_CKPT_SPLIT_OUTPUT:-yes}" != yes ] || [ "${h##*-r}" = 0 ] || own_output
    exec "$@"
fi
rank="$1"; mpi="$2"; ntasks="$3"; shift 3
export SLURM_CKPT_MPI="$mpi"
cd "${SLURM_CKPT_CWD:-/}" 2>/dev/null || cd /

if [ "$mpi" = none ]; then
    exec "$@"
fi
if [ "$rank" != 0 ]; then
    exec /usr/sbin/sshd -D -e -f "$D/sshd_config"
fi

# Rank 0: wait until every peer's sshd accepts the job key, then become the MPI launcher. The
# peers are probed at once (at most SLURM_CKPT_PEER_PARALLEL in flight), so the wait is the
# slowest peer's, not the sum over the job's ranks.
timeout=${SLURM_CKPT_PEER_TIMEOUT:-120}
deadline=$(( $(date +%s) + timeout ))
peer_ready() {
    until "$D/ssh" "$1" true 2>/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "slurm-ckpt: rank container $1 did not accept ssh within ${timeout}s" >&2
            "$D/ssh" "$1" true || true
            return 1
        fi
        sleep 0.2
    done
}
width=${SLURM_CKPT_PEER_PARALLEL:-32}
failed=0; pids=""; n=0
for h in $(tail -n +2 "$D/hostfile"); do
    peer_ready "$h" &
    pids="$pids $!"; n=$((n + 1))
    if [ "$n" -ge "$width" ]; then
        for p in $pids; do wait "$p" || failed=1; done
        pids=""; n=0
    fi
done
for p in $pids; do wait "$p" || failed=1; done
[ "$failed" = 0 ] || exit 125

# Binding: each rank's container already holds exactly its task's CPUs (its cpuset), and each
# launcher sees one process per container host. A launcher binding by its own view would pin every
# rank to the first CPU it sees, so binding is off unless the job asks for it explicitly
# (--container-env=HYDRA_BINDING=... or OMPI_MCA_hwloc_base_binding_policy=...).
case "$mpi" in
mpich)
    launcher=mpiexec.hydra
    command -v "$launcher" >/dev/null 2>&1 || launcher=mpiexec.mpich
    command -v "$launcher" >/dev/null 2>&1 || launcher=mpiexec
    # Hydra's default is no binding already; explicit, so no site default can change it.
    bind="-bind-to none"
    [ -z "${HYDRA_BINDING:-}" ] || bind=""
    exec "$launcher" -f "$D/hostfile" -n "$ntasks" -launcher ssh -launcher-exec "$D/ssh" $bind "$D/launch" --rank-env "$@"
    ;;
openmpi)
    launcher=mpirun.openmpi
    command -v "$launcher" >/dev/null 2>&1 || launcher=mpirun
    hf=/tmp/.slurm-ckpt-hostfile
    # The job's --container-env names (shell identifiers, checked by the plugin).
    xenv=""
    for n in ${SLURM_CKPT_ENV_NAMES:-}; do xenv="$xenv -x $n"; done
    sed 's/$/ slots=1/' "$D/hostfile" >"$hf"
    # Open MPI binds to core for <= 2 processes by default: every rank on core 0 of its view.
    bind="--bind-to none"
    [ -z "${OMPI_MCA_hwloc_base_binding_policy:-}" ] || bind=""
    exec "$launcher" --hostfile "$hf" -n "$ntasks" --map-by node $bind \
        --mca plm_rsh_agent "$D/ssh" --mca pml ob1 --mca btl tcp,self \
        --mca btl_tcp_if_include eth0 --mca oob_tcp_if_include eth0 \
        -x SLURM_CKPT_MPI -x SLURM_JOB_ID -x SLURM_CKPT_NTASKS -x HOME -x PATH $xenv \
        "$D/launch" --rank-env "$@"
    ;;
*)
    echo "slurm-ckpt: unknown MPI family '$mpi'" >&2
    exit 125
    ;;
esac
