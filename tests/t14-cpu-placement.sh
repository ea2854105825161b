#!/bin/bash
# CPU placement (issue 21): each rank container's cpuset is its task's CPUs from Slurm's allocation,
# so ranks of one node do not share a core; the in-container MPI launchers do not re-bind ranks by
# their own view of the node (Open MPI's default pinned every rank to the first CPU it saw) unless
# the job asks for binding; a CPU quota only with the site's cpu_quota=yes. Not a timing test.
. "$(dirname "$0")/lib.sh"

# expand LIST: the ids of a CPU list ("0-2,5"), one per line.
expand() {
    local IFS=, part
    for part in $1; do
        if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
    done
}
# norm LIST: the list as sorted, unique, comma-separated ids (for comparisons).
norm() { expand "$1" | sort -n -u | paste -sd, -; }
count() { expand "$1" | sort -u | wc -l; }
docker_on() { /usr/bin/docker -H "unix://$VC_RUN/$1/docker.sock" "${@:2}"; }

ONLINE="$(cat /sys/devices/system/cpu/online)"
# expected LOCAL_ID LOCAL_TASKS CPUS_PER_TASK ALLOC_CORES: the task's CPUs as the plugin derives
# them from the step's cores (task/none here): its block of cores (an equal share, at least
# cpus-per-task), core i = the (i mod online)-th online CPU.
expected() {
    local r="$1" n="$2" c="$3" cores online k
    mapfile -t cores < <(expand "$4")
    mapfile -t online < <(expand "$ONLINE")
    [ $((${#cores[@]} / n)) -le "$c" ] || c=$((${#cores[@]} / n))
    for ((k = 0; k < c && k < ${#cores[@]}; k++)); do
        echo "${online[$((cores[(r * c + k) % ${#cores[@]}] % ${#online[@]}))]}"
    done | sort -n -u | paste -sd, -
}
# logged_cpuset JOB RANK: the cpuset the rank's supervisor logged.
logged_cpuset() { sed -n "s/.*rank $2: cpuset \([0-9,-]*\) .*/\1/p" "/var/log/slurm-ckpt/job-$1.log" | tail -n1; }
# alloc_cores JOB: the job's CPU ids on its (single) node, as Slurm reports them.
alloc_cores() { scontrol show job -d "$1" | grep -o 'CPU_IDs=[0-9,-]*' | head -n1 | cut -d= -f2; }
# printed JOB TAG RANK: the list rank RANK printed after "TAG rank=RANK".
printed() { job_out "$1" | sed -n "s/^$2 rank=$3 \([0-9,-]*\)$/\1/p" | head -n1; }
expect_done() {
    local st
    st="$(wait_job "$1" 150)" || { show_job "$1"; fail "job $1 did not end ($st)"; }
    [ "$st" = COMPLETED ] || { show_job "$1"; fail "job $1 ended $st"; }
}

# 1. Two ranks on one node, each printing its own CPUs: disjoint, non-empty, what the supervisors
#    logged and set on the containers, and what Slurm allocated.
id=$(submit -N1 -n2 --container-image="$VC_IMAGE" --container-mpi=none \
    --wrap 'srun /bin/sh -c "echo CPUS rank=\$SLURM_CKPT_RANK \$(grep Cpus_allowed_list /proc/self/status | cut -f2); sleep 6"')
wait_state "$id" RUNNING 60 || { show_job "$id"; fail "job $id did not start"; }
wait_running_ranks "$id" 2
cores="$(alloc_cores "$id")"
[ -n "$cores" ] || { show_job "$id"; fail "job $id: no CPU_IDs in scontrol show job -d"; }
declare -A host_cpuset
while read -r n cid; do
    [ -n "$cid" ] || continue
    read -r r set nano < <(docker_on "$n" inspect -f '{{index .Config.Labels "slurm-ckpt.rank"}} {{.HostConfig.CpusetCpus}} {{.HostConfig.NanoCpus}}' "$cid")
    host_cpuset[$r]="$set"
    [ "$nano" = 0 ] || fail "rank $r: CPU quota NanoCpus=$nano set without the site's cpu_quota=yes"
done < <(container_ids "$id")
expect_done "$id"
for r in 0 1; do
    got="$(printed "$id" CPUS "$r")"
    [ -n "$got" ] || { show_job "$id"; fail "rank $r printed no CPU list"; }
    want="$(expected "$r" 2 1 "$cores")"
    [ "$(norm "$got")" = "$want" ] || fail "rank $r runs on CPUs $got, expected $want (allocated cores $cores, online $ONLINE)"
    [ "$(norm "${host_cpuset[$r]:-}")" = "$want" ] || fail "rank $r: container cpuset '${host_cpuset[$r]:-}', expected $want"
    [ "$(norm "$(logged_cpuset "$id" "$r")")" = "$want" ] || fail "rank $r: supervisor logged cpuset '$(logged_cpuset "$id" "$r")', expected $want"
done
r0="$(printed "$id" CPUS 0)" r1="$(printed "$id" CPUS 1)"
[ -z "$(comm -12 <(expand "$r0" | sort -u) <(expand "$r1" | sort -u))" ] || fail "ranks share CPUs: rank 0 on $r0, rank 1 on $r1"
say "2 ranks on one node on disjoint CPUs $r0 | $r1 (allocated cores $cores, online CPUs $ONLINE)"

# mpi_affinity MPI IMAGE RANKVAR [SBATCH-ARGS...]: a 2-rank job, 2 CPUs per task, whose MPI-started
# ranks print their affinity; prints the job id once it has ended.
mpi_affinity() {
    local mpi="$1" image="$2" var="$3" id
    shift 3
    id=$(submit -N1 -n2 -c2 --container-image="$image" --container-mpi="$mpi" "$@" \
        --wrap "srun /bin/sh -c \"echo AFF rank=\\\$$var \\\$(grep Cpus_allowed_list /proc/self/status | cut -f2)\"")
    expect_done "$id"
    echo "$id"
}

# 2. Open MPI and MPICH: a rank started by the launcher keeps its whole container cpuset (2 CPUs);
#    Open MPI's own default would bind it to one core.
for cell in "openmpi $VC_IMAGE OMPI_COMM_WORLD_RANK" "mpich $VC_IMAGE_MPICH PMI_RANK"; do
    read -r mpi image var <<<"$cell"
    id="$(mpi_affinity "$mpi" "$image" "$var")"
    for r in 0 1; do
        got="$(printed "$id" AFF "$r")" set="$(logged_cpuset "$id" "$r")"
        [ -n "$got" ] && [ -n "$set" ] || { show_job "$id"; fail "$mpi: rank $r printed '$got', logged cpuset '$set'"; }
        [ "$(norm "$got")" = "$(norm "$set")" ] || { show_job "$id"; fail "$mpi: rank $r bound to CPUs $got inside its container cpuset $set: the launcher binds by its own view"; }
        [ "$(count "$got")" -ge 2 ] || fail "$mpi: rank $r runs on a single CPU ($got) though its task has 2"
    done
    say "$mpi: launcher-started ranks keep their container's CPUs ($(printed "$id" AFF 0) | $(printed "$id" AFF 1))"
done

# 3. A binding the job asks for is still applied (Open MPI: one core per rank).
id="$(mpi_affinity openmpi "$VC_IMAGE" OMPI_COMM_WORLD_RANK --container-env=OMPI_MCA_hwloc_base_binding_policy=core)"
for r in 0 1; do
    got="$(printed "$id" AFF "$r")"
    [ -n "$got" ] && [ "$(count "$got")" = 1 ] || { show_job "$id"; fail "openmpi with binding_policy=core: rank $r on CPUs '$got', expected one core"; }
done
say "openmpi with the job's own binding policy: ranks bound to one core each"

# 4. The site's cpu_quota=yes adds a CFS quota of the task's CPUs.
with_site cpu_quota=yes
id=$(submit -N1 -n1 --container-image="$VC_IMAGE" --container-mpi=none --wrap 'srun sleep 6')
wait_state "$id" RUNNING 60 || { show_job "$id"; fail "job $id did not start"; }
wait_running_ranks "$id" 1
read -r n cid < <(container_ids "$id")
nano="$(docker_on "$n" inspect -f '{{.HostConfig.NanoCpus}}' "$cid")"
[ "$nano" = 1000000000 ] || fail "cpu_quota=yes: NanoCpus=$nano, expected 1000000000 (1 CPU)"
expect_done "$id"
say "cpu_quota=yes: NanoCpus=$nano"
