#!/bin/sh
# In-container init of every rank container (written by slurm-ckpt into /.slurm-ckpt/launch).
# usage: launch RANK MPI NTASKS PROGRAM [ARGS...]
#        launch --rank-env PROGRAM [ARGS...]   (what the MPI launcher starts in each rank container)
# Rank 0 runs the MPI launcher, which reaches the other ranks' containers over ssh; every other rank
# runs sshd as the job user. Everything must descend from this init process: CRIU checkpoints the
# init's process tree only (processes started by `docker exec` would be silently lost).
set -e
D=/.slurm-ckpt
if [ "$1" = --rank-env ]; then
    # An MPI rank: the launcher passed on rank 0's environment; this container's own Slurm values
    # (SLURM_PROCID, ...) are in env-r<R>, R from the hostname j<JOB>-r<R>.
    shift
    h=$(cat /etc/hostname 2>/dev/null || hostname)
    f="$D/env-r${h##*-r}"
    [ ! -f "$f" ] || . "$f"
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

# Rank 0: wait until every peer's sshd accepts the job key, then become the MPI launcher.
deadline=$(( $(date +%s) + ${SLURM_CKPT_PEER_TIMEOUT:-120} ))
for h in $(tail -n +2 "$D/hostfile"); do
    until "$D/ssh" "$h" true 2>/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "slurm-ckpt: rank container $h did not accept ssh within ${SLURM_CKPT_PEER_TIMEOUT:-120}s" >&2
            "$D/ssh" "$h" true || true
            exit 125
        fi
        sleep 0.2
    done
done

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
