#!/bin/bash
# A 128-rank Open MPI ring across 4 nodes (issue 18): more ranks than the old limit of 64 and 32
# containers per node on 4 advertised CPUs (--overcommit). It starts, is suspended and resumed
# (every container frozen, then thawed), checkpoints, is requeued and restored with its ranks on
# other nodes, and verifies. Status shows a line per node for a job this large.
# Opt-in (about 10 minutes on the 2-core CI machine): SLURM_CKPT_BIG=1, on a cluster of at least
# 4 nodes: SLURM_CKPT_BIG=1 VC_TEST_NODES=4 VC_TEST_TIMEOUT=2400 scripts/test t56
# (SLURM_CKPT_BIG_RANKS overrides the rank count).
. "$(dirname "$0")/lib.sh"
if [ "${SLURM_CKPT_BIG:-0}" != 1 ]; then
    say "skipped: set SLURM_CKPT_BIG=1 to run it (about 10 minutes)"
    exit 0
fi
set -- $VC_NODES
[ $# -ge 4 ] || fail "needs 4 nodes (scripts/vcluster up 4), the cluster has $#"
nodes="$1,$2,$3,$4"
n="${SLURM_CKPT_BIG_RANKS:-128}"
# Frozen containers of the job: one `docker ps` per node (lib.sh's paused_count inspects each
# container, seconds at this size).
frozen() {
    local node c=0
    for node in ${nodes//,/ }; do
        c=$((c + $(/usr/bin/docker -H "unix://$VC_RUN/$node/docker.sock" ps -q --filter "label=slurm-ckpt.job=$1" --filter status=paused | wc -l)))
    done
    echo "$c"
}
per_node=$((n / 4))
# The virtual nodes share one kernel, so the job user's pipes of all 4 nodes count against one
# per-user limit: past fs.pipe-user-pages-soft (64 MiB of pipe buffers) the kernel refuses the pipe
# sizes CRIU restores as that user ("Can't restore pipe size: Operation not permitted"). A real
# node has a quarter of these ranks; a site with many ranks per node raises it (README, limits).
pipe_soft="$(sysctl -n fs.pipe-user-pages-soft)"
trap 'sysctl -qw fs.pipe-user-pages-soft="$pipe_soft"' EXIT
sysctl -qw fs.pipe-user-pages-soft=0

# Block placement first, cyclic after the requeue (the batch script reads it at every start), so
# the restore puts nearly every rank on another node.
echo block >"$JOBDIR/t56.dist"
chmod 644 "$JOBDIR/t56.dist"
start=$SECONDS
id=$(submit -w "$nodes" -N4 -n"$n" --overcommit --open-mode=append \
    --container-image="$VC_IMAGE" --container-mpi=openmpi --container-ckpt --time=60 \
    --wrap "srun --overcommit --distribution=\$(cat $JOBDIR/t56.dist) /opt/ckpt-tests/bin/ring --seconds 120 --sleep-ms 20")
wait_state "$id" RUNNING 120 || { show_job "$id"; fail "job $id did not start"; }
wait_running_ranks "$id" "$n" 600
wait_output "$id" "^ring: $n ranks" 300
say "$n ranks running after $((SECONDS - start)) s"
[ "$(slurm-ckpt status "$id" --json | jq -r '.[].ip' | sort -u | wc -l)" = "$n" ] || fail "addresses not unique"
[ "$(slurm-ckpt status "$id" --json | jq -r '.[].hostname' | sort -u | wc -l)" = "$n" ] || fail "hostnames not unique"
st_lines="$(slurm-ckpt status "$id")"
head -n 6 <<<"$st_lines" >&2
[ "$(slurm-ckpt status "$id" | grep -c "^ *$id ")" = 4 ] || fail "status should show one line per node for $n ranks"
sleep 10

# Suspend: every container frozen; resume: every one thawed.
t=$SECONDS
scontrol suspend "$id"
end=$((SECONDS + 60))
until [ "$(frozen "$id")" = "$n" ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "only $(frozen "$id")/$n frozen 60 s after suspend"; }
    sleep 0.5
done
say "$n/$n frozen within $((SECONDS - t)) s"
sleep 3
scontrol resume "$id"
end=$((SECONDS + 60))
until [ "$(frozen "$id")" = 0 ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "containers still frozen 60 s after resume"; }
    sleep 0.5
done
say "thawed"
sleep 10

# Checkpoint on requeue, restore with the ranks spread cyclically instead of in blocks.
before="$(rank_nodes "$id")"
echo cyclic >"$JOBDIR/t56.dist"
t=$SECONDS
requeue_now "$id" "$nodes"
wait_state "$id" RUNNING 300 || { show_job "$id"; fail "job $id did not restart"; }
wait_running_ranks "$id" "$n" 900
slurm-ckpt status "$id" --json | jq -e 'all(.[]; .events | map(.what) | any(startswith("restored from")))' >/dev/null ||
    { show_job "$id"; fail "ranks were not restored from a checkpoint"; }
after="$(rank_nodes "$id")"
say "restored in $((SECONDS - t)) s"
moved=0
for p in $after; do case " $before " in *" $p "*) ;; *) moved=$((moved + 1)) ;; esac; done
[ "$moved" -ge $((n / 2)) ] || fail "only $moved of $n ranks moved to another node"
say "$moved of $n ranks restored on another node"
expect_ok "$id" 1200
say "$n ranks verified after $((SECONDS - start)) s"
