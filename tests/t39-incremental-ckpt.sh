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
# Chunks are compared by position: a page newly present in an earlier mapping shifts every chunk
# after it (docs/ARCHITECTURE.md, incremental storage). Past MPI's start-up (the solve has begun)
# the layout is steady, as in a long job; before it a rank may still be mapping its buffers.
wait_output "$id" "^cg: solve"
sleep 2
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "first checkpoint of job $id failed"; }
# reused GEN: the job's bytes in generation GEN linked from the one before, as "reused of raw".
reused() {
    jq -r '"\([.ranks[].reused_bytes] | add) \([.ranks[].raw_bytes] | add)"' \
        "$VC_CKPT_ROOT/$VC_USER/$id/$(printf 'g%04d' "$1")/manifest.json"
}
# A mapping the program (or MPI) adds below its ballast between two checkpoints shifts every chunk
# after it: that pair reuses little. Two pairs; at least one must reuse most of the job's bytes.
ok=0 seen=()
for g in 2 3; do
    slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "checkpoint $g of job $id failed"; }
    read -r r t < <(reused "$g")
    seen+=("g$g: $r of $t")
    [ $((r * 2)) -gt "$t" ] && ok=1
done
m="$VC_CKPT_ROOT/$VC_USER/$id/g0003/manifest.json"
jq -e 'all(.ranks[]; .files | any(.name == "chunks.json"))' "$m" >/dev/null || fail "g0003 has no chunk index"
[ "$ok" = 1 ] || { jq '.ranks[] | {rank, raw_bytes, reused_bytes}' "$m" >&2; fail "no generation reused most of the unchanged bytes (${seen[*]})"; }
say "bytes linked from the generation before: ${seen[*]}"
sleep 2
requeue_restored "$id" node3,node1 2
expect_ok "$id" 300
say "incremental checkpoints and restore verified"
