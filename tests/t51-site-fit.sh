#!/bin/bash
# Site fit: option_prefix=ckpt (the plugin loaded beside pyxis: --ckpt-image, --ckpt-checkpoint, ...)
# and key_file= another root-only file (a site on Slurm's auth/slurm has no munge key). The default
# option names are then unknown to sbatch; messages name the prefixed options; a job with the
# prefixed options takes an on-demand checkpoint signed with that key, is requeued onto other nodes,
# restored (the MACs verify with the same key) and verifies; a key file group may read makes the
# next job fail naming key_file and the fix. plugstack.conf is restored when the test exits.
. "$(dirname "$0")/lib.sh"
keydir=/etc/slurm-ckpt-t51
key="$keydir/site.key"
rm -rf "$keydir"
mkdir -m 0700 "$keydir"
head -c 64 /dev/urandom >"$key"
chmod 0400 "$key"
with_site option_prefix=ckpt key_file="$key"
trap 'cp "/tmp/$TEST_NAME.plugstack.orig" /etc/slurm/plugstack.conf; rm -rf "$keydir"' EXIT

# The default names are not registered (pyxis may own them).
if out="$(as_user sbatch --parsable --container-image="$VC_IMAGE" --wrap true 2>&1)"; then
    fail "sbatch --container-image was accepted with option_prefix=ckpt (job $out)"
fi
say "--container-image unknown with option_prefix=ckpt: $(head -n1 <<<"$out")"

# Messages name the options as the site configured them.
refused() { # refused PATTERN SBATCH-ARGS...
    local pat="$1"; shift
    local out
    if out="$(as_user sbatch --parsable "$@" --wrap true 2>&1)"; then
        fail "sbatch $* was accepted (job $out), expected a refusal"
    fi
    grep -q -- "$pat" <<<"$out" || fail "sbatch $*: expected '$pat' in: $out"
    grep -q -- "--container-" <<<"$out" && fail "sbatch $*: message names a default option: $out"
    say "refused: $* -> $(grep -m1 "slurm-ckpt: " <<<"$out")"
}
refused "invalid --ckpt-mpi value" --ckpt-image="$VC_IMAGE" --ckpt-mpi=lam
refused "requires --ckpt-image" --ckpt-mounts=/tmp:/x
refused "requires --ckpt-checkpoint" --ckpt-image="$VC_IMAGE" --ckpt-checkpoint-compress=zstd

# A checkpointed job with the prefixed options, restored on other nodes.
id=$(submit -w node1,node2 -N2 -n4 --open-mode=append --ckpt-image="$VC_IMAGE" --ckpt-checkpoint --ckpt-env=FOO=bar \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 16 --min-seconds 30 --sleep-ms 5")
wait_state "$id" RUNNING 60 || { show_job "$id"; fail "job $id did not start"; }
wait_running_ranks "$id" 4
sleep 3
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "on-demand checkpoint of job $id failed"; }
say "on-demand checkpoint of job $id signed with $key"
sleep 2
requeue_restored "$id" node2,node3 4
expect_ok "$id" 300

# A key file group may read is refused, naming key_file and the fix.
chmod 0440 "$key"
id=$(submit -N1 -n1 --ckpt-image="$VC_IMAGE" --wrap "srun true")
st="$(wait_job "$id" 90)"
[ "$st" != COMPLETED ] || { show_job "$id"; fail "job $id ran with a group-readable key file"; }
job_out "$id" | has "key_file" && job_out "$id" | has "chmod 0400" ||
    { show_job "$id"; fail "job $id: the failure does not name key_file and the fix: $(job_out "$id")"; }
say "group-readable key file refused: $(job_out "$id" | grep -m1 key_file)"
