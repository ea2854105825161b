#!/bin/bash
# Storage faults on a network filesystem (--storage=gluster only), one 2-node job through all of
# them (site timeout 30 s, below GlusterFS's 42 s ping-timeout, so a hung client must be cut short
# by the bounded waits; docs/STORAGE.md):
# A. The storage server stops while the job runs: `slurm-ckpt checkpoint` and every rank's
#    checkpoint fail within the bound naming the storage, the job runs on unfrozen, nothing is
#    committed; once the server is back the next checkpoint commits.
# B. The server is gone when the requeued job restarts: the job is not started from scratch but
#    held (site on_restore_failure=hold), the reason in its Comment; released once every node's
#    client sees the storage again, it restores its newest generation and runs on.
# C. node2's client is killed while the ranks dump: the checkpoint fails within the bound, the job
#    runs on; while the dead mount is gone and the new one not yet there nothing is written to
#    node2's own disk; with the client remounted the next checkpoint commits.
# D. node2 is cut off from the server (packets dropped: its client hangs) while the ranks dump: the
#    checkpoint fails within the bound, nothing is committed; once the partition heals no rank is
#    left frozen and the next checkpoint commits. The job then ends by itself and verifies.
# E. Root squashed while the site says root is root there (storage_root_uid=0): a new checkpointing
#    job is refused at its start naming root squash (t63: squashed storage set up as a site must).
# F. node2's storage not mounted when a job starts there: with the site's storage_fstype the job is
#    refused naming it, and nothing is written to node2's own disk.
. "$(dirname "$0")/lib.sh"
if [ "${VC_STORAGE:-local}" != gluster ]; then
    say "SKIP: needs the cluster on a network filesystem (vcluster up --storage=gluster), it runs on ${VC_STORAGE:-local}"
    exit 0
fi
site_timeout=30
margin=45
bound=$((site_timeout + margin))
with_site timeout=$site_timeout on_restore_failure=hold
restore_storage() {
    local vc="$REPO/scripts/vcluster"
    "$vc" storage start >/dev/null 2>&1 || true
    "$vc" storage heal node2 >/dev/null 2>&1 || true
    "$vc" storage root-squash off >/dev/null 2>&1 || true
    { "$vc" exec node2 findmnt -n "$VC_CKPT_ROOT" >/dev/null 2>&1 && "$vc" exec node2 timeout 5 stat -t "$VC_CKPT_ROOT" >/dev/null 2>&1; } ||
        "$vc" storage remount node2 >/dev/null 2>&1 || true
}
trap 'restore_storage; cp "/tmp/$TEST_NAME.plugstack.orig" /etc/slurm/plugstack.conf' EXIT

gens() { slurm-ckpt list "$1" --json | jq -r '[.[].manifest.generation] | map(tostring) | join(",")'; }
# idle ID: no rank of the job is in a checkpoint any more (a rank cut off during one ends it on its
# own clock: the next request would wait for it).
idle() {
    local end=$((SECONDS + 60))
    until slurm-ckpt status "$1" --json 2>/dev/null | jq -e 'all(.[]; .dumping == null)' >/dev/null; do
        [ "$SECONDS" -lt "$end" ] || { show_job "$1"; fail "a rank of job $1 is still in a checkpoint after 60 s"; }
        sleep 1
    done
}
# fault_mid_dump ID WHAT CMD...: start a checkpoint, run CMD once node2's rank dumps; the checkpoint
# must fail within the bound and leave the job running.
fault_mid_dump() {
    local id="$1" what="$2" t0 cli end took
    shift 2
    t0=$SECONDS
    slurm-ckpt checkpoint "$id" --wait "$bound" --quiet >/tmp/t62-cli.out 2>&1 &
    cli=$!
    end=$((SECONDS + 60))
    until slurm-ckpt status "$id" --json 2>/dev/null | jq -e '.[] | select(.node == "node2") | .dumping != null' >/dev/null; do
        [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "$what: the rank on node2 never began to dump"; }
        sleep 0.1
    done
    "$@"
    if wait "$cli"; then
        cat /tmp/t62-cli.out >&2
        fail "$what: the checkpoint succeeded"
    fi
    took=$((SECONDS - t0))
    [ "$took" -le "$bound" ] || fail "$what: the checkpoint took ${took}s to fail (bound ${bound}s)"
    say "$what: the checkpoint failed in ${took}s: $(tail -1 /tmp/t62-cli.out)"
}
running_unfrozen() {
    [ "$(job_field "$1" JobState)" = RUNNING ] || { show_job "$1"; fail "$2: job $1 stopped"; }
    [ "$(paused_count "$1")" = 0 ] || { show_job "$1"; fail "$2: containers left frozen"; }
}

id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 100 --min-seconds 240 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2 120
wait_output "$id" "^cg: solve"
slurm-ckpt checkpoint "$id" --quiet || { show_job "$id"; fail "first checkpoint of job $id failed"; }
say "generation 1 committed"

# --- A. the server stops while the job runs ---
"$REPO/scripts/vcluster" storage stop
t0=$SECONDS
if timeout "$bound" slurm-ckpt checkpoint "$id" 2>/tmp/t62-cli.err; then
    fail "A: a checkpoint succeeded with the storage server stopped"
fi
[ $((SECONDS - t0)) -lt "$bound" ] || fail "A: slurm-ckpt checkpoint did not give up within ${bound}s"
has -e "$VC_CKPT_ROOT" -e "checkpoint storage" /tmp/t62-cli.err ||
    fail "A: the CLI's error does not name the storage: $(cat /tmp/t62-cli.err)"
say "A: slurm-ckpt checkpoint failed in $((SECONDS - t0))s: $(tail -1 /tmp/t62-cli.err)"
# The supervisors themselves, asked as the CLI asks them (it may have given up before signalling).
t0=$SECONDS
scancel --signal=USR1 "$id" || fail "cannot signal job $id"
wait_output "$id" "checkpoint failed, job continues: .*($VC_CKPT_ROOT|checkpoint storage)" "$bound"
say "A: the ranks' checkpoint failed in $((SECONDS - t0))s: $(job_out "$id" | grep 'checkpoint failed, job continues' | tail -1)"
sleep 2
running_unfrozen "$id" A
"$REPO/scripts/vcluster" storage start
storage_clients_back 90
idle "$id"
slurm-ckpt checkpoint "$id" --quiet || { show_job "$id"; fail "A: the checkpoint after the server came back failed"; }
g="$(gens "$id")"
last="${g##*,}"
[ "$last" -gt 1 ] || fail "A: no new generation after the server came back (have $g)"
# No half-written generation was made visible while the storage was down.
[ "$(find "$VC_CKPT_ROOT/$VC_USER/$id" -maxdepth 1 -name 'g*' -type d | wc -l)" = "$(echo "$g" | tr ',' '\n' | wc -l)" ] ||
    fail "A: generation directories and verified manifests differ: $(ls -a "$VC_CKPT_ROOT/$VC_USER/$id")"
say "A: with the server back the next checkpoint committed (generations $g)"

# --- B. the server gone when the job restarts ---
"$REPO/scripts/vcluster" storage stop
requeue_now "$id" node1,node2
end=$((SECONDS + site_timeout + 120))
until [ "$(job_field "$id" JobState)" = PENDING ] && job_field "$id" Reason | has -i 'held'; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "B: job $id was not held when its storage was gone at restart"; }
    sleep 1
done
comment="$(scontrol show job "$id" | sed -n 's/^ *Comment=//p')"
has 'checkpoint storage unavailable at restart (job held)' <<<"$comment" ||
    { show_job "$id"; fail "B: the held job's Comment does not say why: '$comment'"; }
say "B: job $id held at restart with the storage gone: $(cut -c1-160 <<<"$comment")"
"$REPO/scripts/vcluster" storage start
# The nodes' own clients reconnect on their own schedule: a release before they do is held again.
storage_clients_back 90
scontrol release "$id" || fail "B: scontrol release $id failed"
# (Slurm delays a requeued job's start by about two minutes unless told otherwise.)
scontrol update jobid="$id" StartTime=now || fail "B: cannot start job $id now"
wait_state "$id" RUNNING 120 || { show_job "$id"; fail "B: job $id did not restart after its release"; }
# (The rank records still say running from before the requeue: wait for the restore itself.)
end=$((SECONDS + 120))
until [ "$(grep -c ' restored from ' "/var/log/slurm-ckpt/job-$id.log" || true)" -ge 2 ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "B: job $id's ranks were not restored within 120 s of the release"; }
    sleep 1
done
wait_running_ranks "$id" 2 120
restored="$(grep -o 'restored from .*/g[0-9]*/' "/var/log/slurm-ckpt/job-$id.log" | tail -1 | sed 's|.*/g0*\([0-9]*\)/$|\1|' || true)"
[ -n "$restored" ] && [ "$restored" -ge "$last" ] ||
    { show_job "$id"; fail "B: job $id was not restored from generation $last or later (restored: '${restored}')"; }
[ "$(job_out "$id" | grep -c '^cg: 2 ranks')" = 1 ] || { show_job "$id"; fail "B: job $id was started from scratch"; }
say "B: released, job $id restored from generation $restored"

# --- C. node2's client killed during the dump ---
before="$(gens "$id")"
fault_mid_dump "$id" "C (node2's client killed mid-dump)" "$REPO/scripts/vcluster" storage kill-client node2
sleep 2
running_unfrozen "$id" C
[ "$(gens "$id")" = "$before" ] || fail "C: generations changed from $before to $(gens "$id")"
# The dead mount goes first and the new one comes a while later (a remount's gap): meanwhile the
# checkpoint root's path is node2's own disk, and nothing may be written there (records kept
# trying, say: they would never be seen by another node).
"$REPO/scripts/vcluster" exec node2 umount -l "$VC_CKPT_ROOT"
gap=$(date +%s)
[ -z "$("$REPO/scripts/vcluster" exec node2 findmnt -n "$VC_CKPT_ROOT")" ] || fail "C: $VC_CKPT_ROOT is still mounted on node2"
sleep 12
wrote="$("$REPO/scripts/vcluster" exec node2 find "$VC_CKPT_ROOT" -newermt "@$gap" | head -5)"
[ -z "$wrote" ] || { show_job "$id"; fail "C: written to node2's own disk while the storage was unmounted: $wrote"; }
grep -qE 'is not mounted: it lies on|is the storage mounted on this node' "/var/log/slurm-ckpt/job-$id.log" ||
    { show_job "$id"; fail "C: no rank said that the storage was not mounted"; }
"$REPO/scripts/vcluster" storage remount node2
idle "$id"
slurm-ckpt checkpoint "$id" --quiet || { show_job "$id"; fail "C: the checkpoint after node2's client was remounted failed"; }
say "C: with node2's client remounted the next checkpoint committed (generations $(gens "$id"))"

# --- D. node2 cut off from the server during the dump ---
before="$(gens "$id")"
t0=$SECONDS
fault_mid_dump "$id" "D (node2 cut off mid-dump)" "$REPO/scripts/vcluster" storage partition node2
"$REPO/scripts/vcluster" storage heal node2
# node2's client comes back on its own; its rank is thawed once the dump that hung has failed.
end=$((SECONDS + 150))
until "$REPO/scripts/vcluster" exec node2 timeout 5 stat -t "$VC_CKPT_ROOT/.state" >/dev/null 2>&1 &&
    [ "$(paused_count "$id")" = 0 ]; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "D: node2's storage or rank did not recover within 150 s of the heal"; }
    sleep 1
done
running_unfrozen "$id" D
[ "$(gens "$id")" = "$before" ] || fail "D: generations changed from $before to $(gens "$id")"
idle "$id"
say "D: $((SECONDS - t0))s after the cut: node2's client is back, every rank done with the failed checkpoint, none frozen"
slurm-ckpt checkpoint "$id" --quiet || { show_job "$id"; fail "D: the checkpoint after the partition healed failed"; }
say "D: the next checkpoint committed (generations $(gens "$id"))"
expect_ok "$id" 400
[ "$(job_out "$id" | grep -c '^cg: 2 ranks')" = 1 ] || { show_job "$id"; fail "job $id was started from scratch"; }

# --- E. root squash without the site saying so ---
"$REPO/scripts/vcluster" storage root-squash on
id=$(submit -N1 -n1 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt --container-mpi=none \
    --wrap "srun /opt/ckpt-tests/mpich/cg --n 8 --mem-mb 16 --min-seconds 5 --sleep-ms 50")
wait_job "$id" 120 >/dev/null || true
"$REPO/scripts/vcluster" storage root-squash off
[ "$(job_field "$id" JobState)" != COMPLETED ] || { show_job "$id"; fail "E: job $id ran on root-squashed storage"; }
job_out "$id" | has -E 'root squash|squashes root' || { show_job "$id"; fail "E: job $id's error does not name root squash"; }
say "E: on root-squashed storage job $id was refused: $(job_out "$id" | grep -m1 -E 'root squash|squashes root' | cut -c1-200)"

# --- F. node2's storage not mounted when a job starts (site storage_fstype=fuse.glusterfs) ---
grep -q 'storage_fstype=fuse.glusterfs' /etc/slurm/plugstack.conf || fail "F: vcluster's plugstack.conf does not set storage_fstype"
"$REPO/scripts/vcluster" exec node2 umount -l "$VC_CKPT_ROOT"
gap=$(date +%s)
id=$(submit -w node2 -N1 -n1 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt --container-mpi=none \
    --wrap "srun /opt/ckpt-tests/mpich/cg --n 8 --mem-mb 16 --min-seconds 5 --sleep-ms 50")
wait_job "$id" 120 >/dev/null || true
wrote="$("$REPO/scripts/vcluster" exec node2 find "$VC_CKPT_ROOT" -newermt "@$gap" | head -5)"
"$REPO/scripts/vcluster" storage remount node2
[ "$(job_field "$id" JobState)" != COMPLETED ] || { show_job "$id"; fail "F: job $id ran on node2 without its storage"; }
job_out "$id" | has 'is the storage mounted on this node' || { show_job "$id"; fail "F: job $id's error does not say that the storage is not mounted"; }
[ -z "$wrote" ] || fail "F: written to node2's own disk: $wrote"
say "F: with node2's storage unmounted job $id was refused: $(job_out "$id" | grep -m1 'is the storage mounted' | cut -c1-200)"
