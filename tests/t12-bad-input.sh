#!/bin/bash
# Bad options and bad site settings are refused at submit time with a clear message; a job whose
# image is not allowed is refused; jobs without container options are untouched.
. "$(dirname "$0")/lib.sh"
refused() { # refused PATTERN SBATCH-ARGS...: sbatch must fail and print PATTERN
    local pat="$1"; shift
    local out
    if out="$(as_user sbatch --parsable "$@" --wrap true 2>&1)"; then
        fail "sbatch $* was accepted (job $out), expected a refusal"
    fi
    grep -q "slurm-ckpt: " <<<"$out" || fail "sbatch $*: message lacks the plugin prefix: $out"
    grep -qi -- "$pat" <<<"$out" || fail "sbatch $*: expected '$pat' in: $out"
    say "refused: $* -> $(grep -m1 "slurm-ckpt: " <<<"$out")"
}
refused "not allowed" --container-image=docker.io/library/evil:1
refused "container-image" "--container-image=bad image"
refused "container-mpi" --container-image="$VC_IMAGE" --container-mpi=lam
refused "container-mounts" --container-image="$VC_IMAGE" --container-mounts=relative:/x
refused "requires --container-image" --container-mounts=/tmp:/x
refused "multiple times" --container-image="$VC_IMAGE" --container-image="$VC_IMAGE"
refused "container-ckpt-interval" --container-image="$VC_IMAGE" --container-ckpt --container-ckpt-interval=abc
refused "container-ckpt-compress" --container-image="$VC_IMAGE" --container-ckpt --container-ckpt-compress=gzip
refused "requires --container-ckpt" --container-image="$VC_IMAGE" --container-ckpt-compress=zstd
refused "reserved" --container-image="$VC_IMAGE" --container-env=SLURM_JOB_ID=1
refused "not a variable name" --container-image="$VC_IMAGE" --container-env=1X=1

# --container-env reaches every rank (Open MPI forwards it to the ranks it starts over ssh) and
# overrides the product's defaults.
id=$(submit -w node1,node2 -N2 -n4 --container-image="$VC_IMAGE" --container-env=FOO=bar,UCX_TLS=tcp,self \
    --wrap 'srun sh -c "echo env FOO=\$FOO UCX_TLS=\$UCX_TLS"')
st="$(wait_job "$id" 90)"
[ "$st" = COMPLETED ] && [ "$(job_out "$id" | grep -c '^env FOO=bar UCX_TLS=tcp,self$')" = 4 ] ||
    { show_job "$id"; fail "--container-env did not reach all 4 ranks"; }
say "--container-env reached all 4 ranks"

# A bad site setting makes the plugin refuse to load, naming the key.
tmp="$(mktemp -d)"
cp /etc/slurm/slurm.conf "$tmp/"
sed 's/ network=ckpt-net/ network=ckpt-net bogus_key=1/' /etc/slurm/plugstack.conf >"$tmp/plugstack.conf"
sed -i "s|^#*PlugStackConfig=.*||" "$tmp/slurm.conf"
echo "PlugStackConfig=$tmp/plugstack.conf" >>"$tmp/slurm.conf"
chmod 755 "$tmp"; chmod 644 "$tmp"/*
if out="$(SLURM_CONF="$tmp/slurm.conf" as_user sbatch --container-image="$VC_IMAGE" --wrap true 2>&1)"; then
    fail "sbatch with a bad site setting was accepted: $out"
fi
grep -q "bogus_key" <<<"$out" || fail "bad site setting: message does not name the key: $out"
rm -rf "$tmp"
say "bad site setting refused naming the key"

# No container options: untouched.
id=$(submit -N2 -n2 --wrap "srun hostname")
st="$(wait_job "$id" 60)"
[ "$st" = COMPLETED ] || { show_job "$id"; fail "plain job ended $st"; }
[ "$(job_out "$id" | sort -u | tr '\n' ' ')" = "node1 node2 " ] || [ "$(job_out "$id" | wc -l)" = 2 ] || fail "plain job output: $(job_out "$id")"
