#!/bin/bash
# Every phase of a checkpoint and of a restore is timed, per rank: the manifest (slurm-ckpt list
# --json) has settle, freeze, dump, wait, pack and seal of every rank adding up to its total, and rank 0's
# commit; the checkpoint's round trip covers them; the restored ranks' status records have verify,
# unpack, wait, CRIU restore and network release adding up to theirs.
. "$(dirname "$0")/lib.sh"
id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 40 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2
sleep 3
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "on-demand checkpoint of job $id failed"; }
m="$(slurm-ckpt list "$id" --json | jq '.[-1].manifest')"
# Within 3 % (and 20 ms of rounding).
near='def near(a; b): ((a - b) | fabs) <= 0.02 + 0.03 * b;'
jq -e "$near"' all(.ranks[]; .phases.total > 0 and near((.phases.settle // 0) + .phases.freeze + .phases.dump + .phases.wait_dumped + .phases.pack + .phases.seal; .phases.total))' <<<"$m" >/dev/null ||
    { jq '.ranks[] | {rank, phases}' <<<"$m" >&2; fail "checkpoint phases missing or not adding up"; }
jq -e "$near"' .checkpoint_seconds >= ([.ranks[].phases.total] | max) and near(.ranks[0].phases.total + .commit_seconds; .checkpoint_seconds)' <<<"$m" >/dev/null ||
    { jq '{checkpoint_seconds, commit_seconds, ranks: [.ranks[] | {rank, phases}]}' <<<"$m" >&2; fail "the round trip is not rank 0's phases plus its commit"; }
say "$(jq -r '"checkpoint \(.checkpoint_seconds | .*100 | round / 100) s: " + ([.ranks[] | "rank \(.rank) dump \(.phases.dump | .*100 | round / 100) s"] | join(", "))' <<<"$m")"
slurm-ckpt status "$id" | has "checkpoint g[0-9]*: settle" || { slurm-ckpt status "$id"; fail "status does not show the checkpoint's phases"; }
requeue_restored "$id" node2,node3 2
slurm-ckpt status "$id" --json | jq -e "$near"' all(.[]; .last_restore.total > 0 and near(.last_restore.verify + .last_restore.unpack + .last_restore.wait + .last_restore.criu + .last_restore.network; .last_restore.total))' >/dev/null ||
    { slurm-ckpt status "$id" --json | jq '.[] | {rank, last_restore}' >&2; fail "restore phases missing or not adding up"; }
slurm-ckpt status "$id" | has "restore from g[0-9]*: verify" || { slurm-ckpt status "$id"; fail "status does not show the restore's phases"; }
expect_ok "$id" 300
say "checkpoint and restore phases recorded per rank and adding up"
