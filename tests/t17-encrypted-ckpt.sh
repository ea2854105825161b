#!/bin/bash
# Site encrypt=yes: CRIU dumps into the node's staging directory and each rank stores its images in
# the generation encrypted (XChaCha20-Poly1305 in 1 MiB segments, key derived per user from the
# site key) as NAME.enc. An on-demand checkpoint of a 2-rank job: every stored file must end in .enc,
# start with the format's magic and hold no plaintext the job is known to have (the program's path,
# which CRIU writes into files.img and the stack pages hold as argv[0]). Then a requeue with every
# rank on another node: the ranks must be restored from that generation (decrypted into staging)
# and the job must verify, with no staged images left behind.
. "$(dirname "$0")/lib.sh"
stage=/var/tmp/slurm-ckpt-stage
marker=/opt/ckpt-tests/bin/cg
with_site encrypt=yes
id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun $marker --n 20 --mem-mb 16 --min-seconds 30 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2
sleep 3
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "on-demand checkpoint of job $id failed"; }
gen=$(ls -d /var/lib/vc/shared/ckpt/"$VC_USER"/"$id"/g* | tail -n1)
m="$gen/manifest.json"
jq -e 'all(.ranks[]; .encryption == "xchacha20poly1305" and (.files | length > 0) and (.files | all(.name | endswith(".enc"))))' "$m" >/dev/null ||
    { jq '.ranks[] | {rank, encryption, files: [.files[].name]}' "$m" >&2; fail "generation $gen is not stored encrypted"; }
n=0
for f in "$gen"/rank-*/*.enc; do
    [ "$(head -c 7 "$f")" = SCCENC1 ] || fail "$f does not start with the encrypted format's magic"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || fail "no encrypted files in $gen"
leaked=$(grep -r -a -l -F "$marker" "$gen"/rank-* || true)
[ -z "$leaked" ] || fail "plaintext '$marker' found in stored images: $leaked"
say "$n encrypted image files in $gen, no plaintext marker"
sleep 2
requeue_restored "$id" node3,node1 2
grep -q "unpacked" "/var/log/slurm-ckpt/job-$id.log" || { show_job "$id"; fail "the restore did not decrypt into staging"; }
expect_ok "$id" 300
left=$( (find "$stage/$id" -type f 2>/dev/null || true) | wc -l)
[ "$left" = 0 ] || { find "$stage/$id" >&2; fail "$left staged image file(s) left behind"; }
say "encrypted checkpoint and restore on other nodes verified; staging empty"
