#!/bin/bash
# Site incremental=yes: page images are stored in 4 MiB chunks and the chunks unchanged since the
# previous generation are hard-linked instead of written. cg with 48 MiB of ballast per rank (set
# once, verified at the end): the second of two on-demand checkpoints must reuse most of its bytes;
# then a requeue checkpoint and a restore with every rank on another node (the chunks joined again
# in staging) must verify.
. "$(dirname "$0")/lib.sh"
with_site incremental=yes
id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 48 --min-seconds 30 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2
sleep 3
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "first checkpoint of job $id failed"; }
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "second checkpoint of job $id failed"; }
m="$(ls -d /var/lib/vc/shared/ckpt/"$VC_USER"/"$id"/g* | tail -n1)/manifest.json"
jq -e 'all(.ranks[]; .reused_bytes > .raw_bytes / 2 and (.files | any(.name == "chunks.json")))' "$m" >/dev/null ||
    { jq '.ranks[] | {rank, raw_bytes, reused_bytes, files: [.files[].name]}' "$m" >&2; fail "second generation did not reuse the unchanged chunks"; }
say "$(jq -r '"second generation: \([.ranks[].reused_bytes] | add) of \([.ranks[].raw_bytes] | add) bytes linked from the first"' "$m")"
sleep 2
requeue_restored "$id" node3,node1 2
expect_ok "$id" 300
say "incremental checkpoints and restore verified"
