#!/bin/bash
# --container-ckpt-compress=zstd:3 (the job's choice over the site's compress=none; the site setting
# itself runs in the bench smoke test, t90): CRIU dumps into the node's staging directory and each
# rank packs its images into the generation as NAME.zst while the job runs on. An on-demand
# checkpoint (job continues), then a requeue checkpoint and a restore with every rank on another
# node (unpacked into staging first); the job must verify, and no staged images may be left behind.
. "$(dirname "$0")/lib.sh"
stage=/var/tmp/slurm-ckpt-stage
id=$(submit -w node1,node2 -N2 -n3 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt --container-ckpt-compress=zstd:3 \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 16 --min-seconds 30 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 3
sleep 3
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "on-demand checkpoint of job $id failed"; }
gen=$(ls -d /var/lib/vc/shared/ckpt/"$VC_USER"/"$id"/g* | tail -n1)
m="$gen/manifest.json"
jq -e 'all(.ranks[]; .compression == "zstd:3" and (.files | all(.name | endswith(".zst"))) and .raw_bytes > .bytes)' "$m" >/dev/null ||
    { jq '.ranks[] | {rank, compression, bytes, raw_bytes, files: [.files[].name]}' "$m" >&2; fail "generation $gen is not stored compressed"; }
say "$(jq -r '"stored \(.total_bytes) bytes of \([.ranks[].raw_bytes] | add) (zstd:3)"' "$m")"
sleep 2
requeue_restored "$id" node3,node1 3
grep -q "unpacked" "/var/log/slurm-ckpt/job-$id.log" || { show_job "$id"; fail "the restore did not unpack the images"; }
expect_ok "$id" 300
left=$( (find "$stage/$id" -type f 2>/dev/null || true) | wc -l)
[ "$left" = 0 ] || { find "$stage/$id" >&2; fail "$left staged image file(s) left behind"; }
say "compressed checkpoint and restore verified; staging empty"
