#!/bin/bash
# An MPI job runs as one container per rank across nodes: cg verifies on 2 nodes x 4 ranks, ranks run
# in containers with the hostname/IP/MAC that `slurm-ckpt status --json` reports, and no container
# is left afterwards.
. "$(dirname "$0")/lib.sh"
cp "$REPO/examples/cg-container.sbatch" "$JOBDIR/" && chmod 644 "$JOBDIR/cg-container.sbatch"

# 1. Identity: every rank reports its hostname, IP and MAC from inside its container.
id=$(submit -N2 -n4 --container-image="$VC_IMAGE" --container-mpi=none \
    --wrap 'srun /bin/sh -c "echo ID \$(hostname) \$(ip -4 -o addr show eth0 | awk \"{print \\\$4}\" | cut -d/ -f1) \$(cat /sys/class/net/eth0/address) uid=\$(id -u); sleep 8"')
wait_state "$id" RUNNING 60 || { show_job "$id"; fail "job $id did not start"; }
for _ in $(seq 60); do
    [ "$(slurm-ckpt status "$id" --json | jq '[.[] | select(.state=="running")] | length')" = 4 ] && break
    sleep 0.5
done
status="$(slurm-ckpt status "$id" --json)"
[ "$(jq length <<<"$status")" = 4 ] || { echo "$status"; fail "status shows $(jq length <<<"$status") ranks, expected 4"; }
[ "$(jq -r '.[].node' <<<"$status" | sort -u | wc -l)" = 2 ] || fail "ranks are not on 2 nodes: $(jq -c '[.[].node]' <<<"$status")"
[ "$(jq -r '.[].ip' <<<"$status" | sort -u | wc -l)" = 4 ] || fail "rank IPs are not unique"
expect_id_ok() {
    local st
    st="$(wait_job "$1" 120)" || { show_job "$1"; fail "job $1 did not end"; }
    [ "$st" = COMPLETED ] || { show_job "$1"; fail "job $1 ended $st"; }
}
expect_id_ok "$id"
out="$(job_out "$id")"
for r in 0 1 2 3; do
    want="$(jq -r ".[] | select(.rank==$r) | \"ID \(.hostname) \(.ip) \(.mac)\"" <<<"$status")"
    grep -qF "$want uid=$(id -u "$VC_USER")" <<<"$out" || { echo "$out"; fail "rank $r: expected '$want uid=...' from inside its container"; }
done
say "4 ranks on 2 nodes with the identities status reports, running as $VC_USER"

# 2. cg in containers, 2 nodes x 4 ranks and 3 nodes x 6 ranks.
a=$(submit -N2 -n4 --container-image="$VC_IMAGE" cg-container.sbatch --n 24)
expect_ok "$a" 300
hosts="$(job_out "$a" | sed -n 's/^cg: rank [0-9]* host //p' | sort -u | tr '\n' ' ')"
[ "$hosts" = "j$a-r0 j$a-r1 j$a-r2 j$a-r3 " ] || fail "cg ranks ran on '$hosts', expected the 4 rank containers"
b=$(submit -N3 -n6 --container-image="$VC_IMAGE" cg-container.sbatch --n 24)
expect_ok "$b" 400
[ "$(containers_of "$a")" = 0 ] && [ "$(containers_of "$b")" = 0 ] || fail "containers left after the jobs ended"
[ -z "$(slurm-ckpt status "$a" --json | jq '.[]')" ] || fail "status records of job $a left after the job"
