#!/bin/bash
# A node that cannot restore a checkpoint is refused before CRIU is tried, and the job is requeued
# with that node excluded: it restores verified elsewhere. The virtual nodes share one CPU, so
# each node's CPU description comes from its own file (site setting cpuinfo_path, %n = node); the
# test takes a flag away from node3's after the checkpoint.
. "$(dirname "$0")/lib.sh"
cpudir="$VC_SHARED/t42-cpuinfo"
mkdir -p "$cpudir"
for n in $VC_NODES; do cp /proc/cpuinfo "$cpudir/$n"; done
with_site "restore_compat=cpu cpuinfo_path=$cpudir/%n"
id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 60 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2
sleep 4
# The requeue checkpoints the job and holds it, so the test can change node3 first.
requeuehold_now "$id"
gen="$(ls -d "$VC_CKPT_ROOT/$VC_USER/$id"/g[0-9]* 2>/dev/null | tail -n1)"
[ -n "$gen" ] || { show_job "$id"; fail "job $id has no generation after its requeue"; }
jq -e '.ranks | all(.compat.cpu_flags | length > 0)' "$gen/manifest.json" >/dev/null ||
    fail "$(basename "$gen") records no CPU flags"
# node3 loses an instruction-set flag of the recorded CPU (not a mitigation or VM flag, which the
# check ignores).
flag=""
for f in avx2 sse4_2 sse2; do
    grep -qE "^flags.* $f( |\$)" "$cpudir/node1" && { flag=$f; break; }
done
[ -n "$flag" ] || fail "none of avx2, sse4_2, sse2 in /proc/cpuinfo's flags"
sed -i -E "/^flags/ s/ $flag( |\$)/\1/" "$cpudir/node3"
! grep -qE "^flags.* $flag( |\$)" "$cpudir/node3" || fail "could not take $flag away from node3"
say "node3 now lacks CPU flag $flag"

# Asked before anyone requeues: node3 cannot restore it, node1 can.
rc=0
out="$(slurm-ckpt check-restore "$id" --node node3)" || rc=$?
[ "$rc" = 2 ] || fail "check-restore --node node3 exited $rc, expected 2: $out"
grep -q "lacks flag(s) $flag" <<<"$out" || fail "check-restore does not name flag $flag: $out"
slurm-ckpt check-restore "$id" --node node1 >/dev/null || fail "check-restore says node1 cannot restore job $id"
# (exit 2 for an incompatible node: not through a pipe under pipefail)
out="$(slurm-ckpt check-restore "$id" --node node3 --json)" || true
jq -e '.compatible == false' >/dev/null <<<"$out" || fail "check-restore --json does not say node3 is incompatible: $out"

# Onto node2 and node3: the rank on node3 refuses, excludes node3 and requeues the job.
scontrol update jobid="$id" NodeList=node2,node3 StartTime=now || fail "cannot move job $id"
scontrol release "$id" || fail "cannot release job $id"
end=$((SECONDS + 180))
until job_field "$id" ExcNodeList | has node3; do
    [ "$SECONDS" -lt "$end" ] || { show_job "$id"; fail "job $id was not requeued with node3 excluded"; }
    sleep 0.5
done
say "job $id excluded node3: $(job_field "$id" ExcNodeList), required: $(job_field "$id" ReqNodeList)"
job_field "$id" ReqNodeList | has node3 && { show_job "$id"; fail "job $id still requires node3"; }
slurm-ckpt list "$id" | has "restore refused: node node3 .*lacks flag(s) $flag" ||
    { slurm-ckpt list "$id"; fail "list does not say why node3 refused"; }
wait_state "$id" PENDING 60 || { show_job "$id"; fail "job $id not pending after its requeue"; }
scontrol update jobid="$id" StartTime=now || fail "cannot release job $id"
wait_state "$id" RUNNING 180 || { show_job "$id"; fail "job $id did not restart"; }
wait_running_ranks "$id" 2
nodes="$(rank_nodes "$id")"
case "$nodes" in *node3*) fail "job $id runs on node3 again: $nodes" ;; esac
slurm-ckpt status "$id" --json | jq -e 'all(.[]; .events | map(.what) | any(startswith("restored from")))' >/dev/null ||
    { show_job "$id"; fail "ranks of job $id were not restored from a checkpoint"; }
say "restored on $nodes"
# The restored run's records still say why the job left node3.
slurm-ckpt status "$id" --json | jq -e "all(.[]; (.restore_refused // \"\") | contains(\"$flag\"))" >/dev/null ||
    { slurm-ckpt status "$id"; fail "status does not say why node3 refused"; }
expect_ok "$id" 300
job_out "$id" | has "node node3 cannot restore rank .* lacks flag(s) $flag" ||
    fail "job $id's output does not say why node3 refused"
[ "$(job_out "$id" | grep -c '^VERIFICATION SUCCESSFUL')" = 1 ] || fail "expected exactly one verification line"
rm -rf "$cpudir"
say "node3 refused (CPU flag $flag), the job was requeued without it and restored verified on $nodes"
