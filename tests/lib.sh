# Helpers for the integration tests (sourced by tests/t*.sh). Tests run as root on the host and
# submit jobs as the unprivileged test user into the virtual cluster (scripts/vcluster).
# shellcheck shell=bash
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
eval "$("$REPO/scripts/vcluster" env)"
JOBDIR="/home/$VC_USER/jobs"
mkdir -p "$JOBDIR"
chown "$VC_USER:$VC_USER" "$JOBDIR"
TEST_NAME="$(basename "$0" .sh)"

# has GREP-ARGS: `grep -q` for the end of a pipeline. It reads all its input, so the writer never
# dies of SIGPIPE when the match comes early, which pipefail would report as a failed pipeline.
has() { grep "$@" >/dev/null; }
say() { printf '  [%s] %s\n' "$TEST_NAME" "$*" >&2; }
fail() {
    printf '  [%s] FAIL: %s\n' "$TEST_NAME" "$*" >&2
    exit 1
}

# as_user CMD...: run a command as the test user, in the job directory.
as_user() { (cd "$JOBDIR" && runuser -u "$VC_USER" -- "$@"); }

# submit SBATCH-ARGS...: submit as the test user; prints the job id. Output goes to $JOBDIR/<id>.out.
submit() { as_user sbatch --parsable -o "$JOBDIR/%j.out" -e "$JOBDIR/%j.out" "$@"; }

job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }

# wait_job ID [TIMEOUT]: wait until the job has ended (COMPLETED, FAILED, CANCELLED, TIMEOUT, ...).
wait_job() {
    local id="$1" secs="${2:-300}" end st
    end=$((SECONDS + secs))
    while :; do
        st="$(job_field "$id" JobState)"
        case "$st" in
        COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED) echo "$st"; return 0 ;;
        esac
        if [ "$SECONDS" -ge "$end" ]; then
            echo "TIMEOUT_WAITING($st)"
            return 1
        fi
        sleep 1
    done
}

# wait_state ID STATE [TIMEOUT]
wait_state() {
    local id="$1" want="$2" secs="${3:-120}" end
    end=$((SECONDS + secs))
    until [ "$(job_field "$id" JobState)" = "$want" ]; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.5
    done
}

job_out() { cat "$JOBDIR/$1.out" 2>/dev/null || true; }

# show_job ID: everything needed to diagnose a failed job.
show_job() {
    local id="$1"
    echo "----- job $id: scontrol -----" >&2
    scontrol show job "$id" >&2 || true
    echo "----- job $id: output -----" >&2
    job_out "$id" | tail -n 60 >&2
    echo "----- job $id: helper logs -----" >&2
    tail -n 40 "/var/log/slurm-ckpt/job-$id.log" >&2 2>/dev/null || true
    echo "----- job $id: rank records (last events) and supervisors -----" >&2
    local r node
    for r in "$VC_CKPT_ROOT/.state/$id"/rank-*.json; do
        [ -f "$r" ] || continue
        jq -c '{rank, node, state, events: ((.events // [])[-6:])}' "$r" >&2 2>/dev/null || tail -c 600 "$r" >&2
    done
    pgrep -af "slurm-ckpt supervise .*--job $id " >&2 || echo "(no supervisor of job $id running)" >&2
    for node in $VC_NODES; do
        timeout 10 /usr/bin/docker -H "unix://$VC_RUN/$node/docker.sock" ps -a --filter "label=slurm-ckpt.job=$id" \
            --format "$node {{.Names}} {{.Status}}" >&2 2>/dev/null || true
    done
    echo "----- runtime wrapper log -----" >&2
    tail -n 10 /var/log/slurm-ckpt/runtime.log >&2 2>/dev/null || true
    local f
    for f in "$VC_LOG"/dockerd-*.log; do
        [ -e "$f" ] || continue
        echo "----- $(basename "$f"): last errors -----" >&2
        grep -E 'level=(error|warning)' "$f" | tail -n 8 >&2 || true
    done
}

# expect_ok ID [TIMEOUT]: the job completes with exit 0 and its program verified its result.
expect_ok() {
    local id="$1" st
    st="$(wait_job "$id" "${2:-300}")" || { show_job "$id"; fail "job $id did not end ($st)"; }
    if [ "$st" != COMPLETED ] || [ "$(job_field "$id" ExitCode)" != "0:0" ] || ! job_out "$id" | has '^VERIFICATION SUCCESSFUL'; then
        show_job "$id"
        fail "job $id: state $st, exit $(job_field "$id" ExitCode), expected COMPLETED 0:0 with VERIFICATION SUCCESSFUL"
    fi
    say "job $id verified ($st)"
}

# containers_of JOB: count of the job's containers on every node.
containers_of() {
    local n total=0 c
    for n in $VC_NODES; do
        c="$(/usr/bin/docker -H "unix://$VC_RUN/$n/docker.sock" ps -aq --filter "label=slurm-ckpt.job=$1" | wc -l)"
        total=$((total + c))
    done
    echo "$total"
}

# container_ids JOB: "node id" lines of the job's containers.
container_ids() {
    local n
    for n in $VC_NODES; do
        /usr/bin/docker -H "unix://$VC_RUN/$n/docker.sock" ps -q --filter "label=slurm-ckpt.job=$1" | sed "s/^/$n /"
    done
}

# paused_count JOB: how many of the job's containers are paused (frozen).
paused_count() {
    local n id c=0
    while read -r n id; do
        [ -n "$id" ] || continue
        [ "$(/usr/bin/docker -H "unix://$VC_RUN/$n/docker.sock" inspect -f '{{.State.Paused}}' "$id")" = true ] && c=$((c + 1))
    done < <(container_ids "$1")
    echo "$c"
}

# cpu_ns JOB: total CPU time (ns) the job's containers have used (cgroup v1 cpuacct).
cpu_ns() {
    local n id total=0 u
    while read -r n id; do
        [ -n "$id" ] || continue
        u="$(cat /sys/fs/cgroup/cpuacct/vc-"$n"/"$(/usr/bin/docker -H "unix://$VC_RUN/$n/docker.sock" inspect -f '{{.Id}}' "$id")"/cpuacct.usage 2>/dev/null || echo 0)"
        total=$((total + u))
    done < <(container_ids "$1")
    echo "$total"
}

# wait_containers JOB N [TIMEOUT]: until the job has N running containers.
wait_containers() {
    local end=$((SECONDS + ${3:-60}))
    until [ "$(container_ids "$1" | wc -l)" = "$2" ]; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.5
    done
}

# requeue_now ID [NODELIST]: requeue the job (its ranks checkpoint on SIGTERM), then release it at
# once (Slurm otherwise holds a requeued job ~120 s), optionally onto other nodes.
requeue_now() {
    local id="$1" nodes="${2:-}" end st
    st="$(job_field "$id" JobState)"
    case "$st" in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | OUT_OF_MEMORY | NODE_FAIL)
        # Requeuing an ended job: slurmd revokes the old run's credential at its end, and a new
        # launch in the same second is refused ("Job credential revoked"). Let the end settle.
        end=$((SECONDS + 60))
        while scontrol show job "$id" 2>/dev/null | has 'COMPLETING'; do
            [ "$SECONDS" -lt "$end" ] || break
            sleep 0.5
        done
        sleep 2
        ;;
    esac
    scontrol requeue "$id" || fail "scontrol requeue $id failed"
    end=$((SECONDS + 120))
    while :; do
        st="$(job_field "$id" JobState)"
        [ "$st" = PENDING ] && break
        [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "job $id not pending after requeue ($st)"; }
        sleep 0.5
    done
    if [ -n "$nodes" ]; then
        scontrol update jobid="$id" NodeList="$nodes" StartTime=now || fail "cannot move job $id to $nodes"
    else
        scontrol update jobid="$id" StartTime=now || fail "cannot release job $id"
    fi
}

# wait_output ID PATTERN [TIMEOUT]: until the job's output has a line matching PATTERN (grep -E).
# cg prints "cg: solve" once every rank has exchanged data: Open MPI connects lazily, and a
# checkpoint while a TCP connection is still being set up fails (CRIU: "In-flight connection").
wait_output() {
    local end=$((SECONDS + ${3:-90}))
    until job_out "$1" | has -E "$2"; do
        [ "$SECONDS" -lt "$end" ] || { show_job "$1"; fail "job $1 did not print '$2'"; }
        sleep 0.5
    done
}

# requeuehold_now ID: requeue the job (its ranks checkpoint on SIGTERM) and hold it; returns once
# it is pending, so the test can change its generations or nodes before releasing it.
requeuehold_now() {
    local end=$((SECONDS + 120))
    scontrol requeuehold "$1" || fail "scontrol requeuehold $1 failed"
    until [ "$(job_field "$1" JobState)" = PENDING ]; do
        [ "$SECONDS" -lt "$end" ] || { show_job "$1"; fail "job $1 not pending after requeuehold"; }
        sleep 0.5
    done
}

# rank_nodes JOB: "rank:node" pairs from the status records.
rank_nodes() { slurm-ckpt status "$1" --json | jq -r '.[] | "\(.rank):\(.node)"' | tr '\n' ' '; }

# storage_clients_back SECS [WHO...]: until these clients (default: the host's and every node's
# own) see the storage again (--storage=gluster; a client reconnects on its own schedule after its
# server came back).
storage_clients_back() {
    local secs="$1" end=$((SECONDS + $1)) n who
    shift
    who="${*:-host $VC_NODES}"
    for n in $who; do
        until storage_client_up "$n"; do
            [ "$SECONDS" -lt "$end" ] || fail "the storage did not come back on $n's client within $secs s"
            sleep 1
        done
    done
}

# storage_client_up WHO: whether WHO's client (host, or a node's) answers now.
storage_client_up() {
    if [ "$1" = host ]; then
        timeout 5 stat -t "$VC_CKPT_ROOT/.state" >/dev/null 2>&1
    else
        "$REPO/scripts/vcluster" exec "$1" timeout 5 stat -t "$VC_CKPT_ROOT/.state" >/dev/null 2>&1
    fi
}

# wait_running_ranks JOB N [TIMEOUT]: until status shows N ranks running.
wait_running_ranks() {
    local end=$((SECONDS + ${3:-90}))
    until [ "$(slurm-ckpt status "$1" --json 2>/dev/null | jq '[.[] | select(.state=="running")] | length')" = "$2" ]; do
        [ "$SECONDS" -lt "$end" ] || { show_job "$1"; fail "job $1: $2 running ranks expected"; }
        sleep 0.5
    done
}

# with_site KEY=VALUE...: add site settings to the plugin's plugstack.conf line for the rest of
# this test (Slurm reads plugstack.conf at every step launch); restored when the test exits.
with_site() {
    local conf=/etc/slurm/plugstack.conf
    cp "$conf" "/tmp/$TEST_NAME.plugstack.orig"
    trap 'cp "/tmp/$TEST_NAME.plugstack.orig" /etc/slurm/plugstack.conf' EXIT
    local kv
    # A setting the line has already is replaced (the plugin refuses a key given twice).
    for kv in "$@"; do
        sed -i "/spank_container_ckpt\.so/ s| ${kv%%=*}=[^ ]*||" "$conf"
    done
    sed -i "s|^\(required .*spank_container_ckpt\.so.*\)$|\1 $*|" "$conf"
    grep -q "spank_container_ckpt.so.* $*" "$conf" || fail "could not set site settings $*"
}

# requeue_restored ID NODELIST NRANKS: requeue the job onto NODELIST (checkpoint on SIGTERM), wait
# until its NRANKS ranks run again and check that every one was restored from a checkpoint.
requeue_restored() {
    local id="$1" nodes="$2" n="$3"
    requeue_now "$id" "$nodes"
    wait_state "$id" RUNNING 120 || { show_job "$id"; fail "job $id did not restart"; }
    wait_running_ranks "$id" "$n"
    slurm-ckpt status "$id" --json | jq -e 'all(.[]; .events | map(.what) | any(startswith("restored from")))' >/dev/null ||
        { show_job "$id"; fail "ranks of job $id were not restored from a checkpoint"; }
}
