#!/bin/bash
# `slurm-ckpt image check` accepts the test image for both MPI families and names what an image
# lacks; a job whose image lacks sshd fails at once with the same message.
. "$(dirname "$0")/lib.sh"
D=(/usr/bin/docker -H "unix://$VC_RUN/node1/docker.sock")
bad=slurm-ckpt/no-sshd:latest
cleanup() { "${D[@]}" rm -f t13-mk >/dev/null 2>&1 || true; "${D[@]}" rmi -f "$bad" >/dev/null 2>&1 || true; }
trap cleanup EXIT

out="$(slurm-ckpt image check "$VC_IMAGE" --node node1 --program /opt/ckpt-tests/bin/cg)" || fail "test image refused: $out"
say "$(echo "$out" | tr '\n' ' ')"

"${D[@]}" run --name t13-mk --user 0:0 --network none "$VC_IMAGE" rm -f /usr/sbin/sshd >/dev/null
"${D[@]}" commit t13-mk "$bad" >/dev/null
if out="$(slurm-ckpt image check "$bad" --node node1 --mpi openmpi 2>&1)"; then
    fail "an image without sshd passed the check"
fi
echo "$out" | has "missing OpenSSH server" || fail "check did not name sshd: $out"
say "refused: $(echo "$out" | head -1)"
if slurm-ckpt image check "$VC_IMAGE" --node node1 --program /opt/nothing/here >/dev/null 2>&1; then
    fail "a missing program passed the check"
fi

id=$(submit -w node1 -N1 -n2 --container-image="$bad" --wrap "srun /opt/ckpt-tests/bin/ring --seconds 2")
st="$(wait_job "$id" 120)" || fail "job $id did not end"
[ "$st" != COMPLETED ] || fail "job with an unusable image completed"
job_out "$id" | has "missing OpenSSH server" || { show_job "$id"; fail "job output does not say what the image lacks"; }
[ "$(containers_of "$id")" = 0 ] || fail "containers left behind"
say "job $id with $bad ended $st: $(job_out "$id" | grep -m1 "missing OpenSSH")"
