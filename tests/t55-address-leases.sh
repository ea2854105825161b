#!/bin/bash
# Address leases (issue 18), with a small site subnet (10.88.0.0/22: the old formula had 11 slots,
# so jobs whose ids differ by 11 got the same addresses):
#  - two such jobs run at once with disjoint addresses; both checkpoint, requeue onto other nodes,
#    restore with the same addresses (the lease outlives the requeue) and verify;
#  - several jobs submitted at once get distinct leases; those without checkpoints give their lease
#    back at their end (epilog);
#  - a step of more ranks than the site's max_ranks (16 here) fails before any container starts,
#    naming the limit;
#  - a job that checkpointed keeps its lease after it ended; once Slurm no longer knows it,
#    `slurm-ckpt gc` removes its directory and releases the lease (Slurm's answer faked for that
#    one job id through a scontrol wrapper on PATH: MinJobAge would take 5 minutes).
. "$(dirname "$0")/lib.sh"
with_site subnet=10.88.0.0/22 max_ranks=16
leases="$VC_CKPT_ROOT/.leases"
old_slots=11

# lease_first JOB: first address of the job's lease record ("" when it has none).
lease_first() { jq -r .first "$leases/jobs/$1.json" 2>/dev/null || true; }
# ips JOB: the job's rank addresses, sorted.
ips() { slurm-ckpt status "$1" --json | jq -r '.[].ip' | sort; }
# in_subnet IP: inside 10.88.0.0/22 past the reserved first 256 addresses.
in_subnet() { case "$1" in 10.88.[123].*) return 0 ;; *) return 1 ;; esac; }

# Too many ranks: refused in slurmstepd, no container created.
big=$(submit -N2 -n20 --overcommit --container-image="$VC_IMAGE" --wrap "srun --overcommit /opt/ckpt-tests/bin/ring --seconds 5")
st="$(wait_job "$big" 120)" || fail "job $big did not end"
[ "$st" != COMPLETED ] || { show_job "$big"; fail "a 20-rank job ran with max_ranks=16"; }
# The plugin's slurmstepd error reaches the job's output through srun, and slurmd's log either way.
# Not `{ ...; } | grep -q`: under pipefail the writer's SIGPIPE at grep's first match fails it.
said="$({ job_out "$big"; cat "$VC_LOG"/slurmd-*.log; } 2>/dev/null)"
grep -qF "20 ranks exceed this cluster's limit of 16 per job (site setting max_ranks)" <<<"$said" ||
    { show_job "$big"; fail "job $big: the rank limit is named neither in its output nor in slurmd's log"; }
[ "$(containers_of "$big")" = 0 ] || fail "job $big created containers"
say "a 20-rank step was refused: max_ranks=16 named"

ring="srun /opt/ckpt-tests/bin/ring --seconds 60 --sleep-ms 5"
a=$(submit -w node1,node2 -N2 -n4 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt --wrap "$ring")
# Push the job counter to a + old_slots with jobs that never run.
while :; do
    f=$(submit --hold --wrap true)
    scancel "$f"
    [ "$f" -lt $((a + old_slots - 1)) ] || break
done
b=$(submit -w node2,node3 -N2 -n4 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt --wrap "$ring")
[ $(((b - a) % old_slots)) = 0 ] || fail "job ids $a and $b do not differ by a multiple of $old_slots (got $((b - a)))"
say "jobs $a and $b: same slot under the old formula"
for j in "$a" "$b"; do
    wait_state "$j" RUNNING 60 || { show_job "$j"; fail "job $j did not start"; }
    wait_running_ranks "$j" 4
done
ips_a="$(ips "$a")" ips_b="$(ips "$b")"
[ -z "$(comm -12 <(echo "$ips_a") <(echo "$ips_b"))" ] ||
    fail "jobs $a and $b share addresses: $(comm -12 <(echo "$ips_a") <(echo "$ips_b") | tr '\n' ' ')"
for ip in $ips_a $ips_b; do in_subnet "$ip" || fail "address $ip outside the site subnet"; done
[ "$(echo "$ips_a" | wc -l)" = 4 ] && [ "$(echo "$ips_b" | wc -l)" = 4 ] || fail "expected 4 addresses per job"
first_a="$(lease_first "$a")" first_b="$(lease_first "$b")"
[ -n "$first_a" ] && [ -n "$first_b" ] && [ "$first_a" != "$first_b" ] || fail "lease records: '$first_a' '$first_b'"
say "disjoint: $a $(echo $ips_a) / $b $(echo $ips_b)"
sleep 4

# Checkpoint, requeue onto other nodes, restore: the same addresses, from the same lease.
requeue_restored "$a" node2,node3 4
[ "$(ips "$a")" = "$ips_a" ] || fail "job $a restored with other addresses: $(ips "$a" | tr '\n' ' ')"
[ "$(lease_first "$a")" = "$first_a" ] || fail "job $a has another lease after its requeue"
requeue_restored "$b" node1,node3 4
[ "$(ips "$b")" = "$ips_b" ] || fail "job $b restored with other addresses"
slurm-ckpt list "$a" | grep -c . >/dev/null || fail "no generation of job $a listed"
say "both restored on other nodes with their addresses"
expect_ok "$a" 300
expect_ok "$b" 300

# Several jobs at once: distinct leases; without checkpoints they are given back at the end.
many=()
for _ in 1 2 3 4 5 6; do
    many+=("$(submit -N1 -n2 --container-image="$VC_IMAGE" --wrap "srun /opt/ckpt-tests/bin/ring --seconds 20 --sleep-ms 5")")
done
for j in "${many[@]}"; do
    wait_state "$j" RUNNING 90 || { show_job "$j"; fail "job $j did not start"; }
    wait_running_ranks "$j" 2
done
firsts="$(for j in "${many[@]}"; do lease_first "$j"; done)"
[ "$(echo "$firsts" | grep -c .)" = 6 ] || fail "not every job has a lease record: $(echo $firsts)"
[ "$(echo "$firsts" | sort -u | wc -l)" = 6 ] || fail "leases shared: $(echo $firsts)"
all_ips="$(for j in "${many[@]}"; do ips "$j"; done)"
[ "$(echo "$all_ips" | sort -u | wc -l)" = 12 ] || fail "12 distinct addresses expected: $(echo $all_ips)"
say "6 concurrent jobs, 6 leases, 12 distinct addresses"
for j in "${many[@]}"; do expect_ok "$j" 300; done
for j in "${many[@]}"; do
    end=$((SECONDS + 60)) # the epilog may still run
    while [ -e "$leases/jobs/$j.json" ]; do
        [ "$SECONDS" -lt "$end" ] || fail "job $j ended without a checkpoint but its lease is still there"
        sleep 0.5
    done
done
say "their leases were given back at the end"

# A checkpointed job keeps its lease after it ended; gc releases it once Slurm forgets the job.
c=$(submit -N1 -n2 --container-image="$VC_IMAGE" --container-ckpt --wrap "srun /opt/ckpt-tests/bin/ring --seconds 120 --sleep-ms 5")
wait_state "$c" RUNNING 60 || { show_job "$c"; fail "job $c did not start"; }
wait_running_ranks "$c" 2
sleep 3
slurm-ckpt checkpoint "$c" >/dev/null || { show_job "$c"; fail "checkpoint of job $c failed"; }
scancel "$c"
wait_job "$c" 120 >/dev/null || fail "job $c did not end"
sleep 3
[ -e "$leases/jobs/$c.json" ] || fail "job $c has a generation but its lease was released"
slurm-ckpt gc >/tmp/t55-gc.out 2>&1 || { cat /tmp/t55-gc.out >&2; fail "slurm-ckpt gc failed"; }
[ -e "$leases/jobs/$c.json" ] || { cat /tmp/t55-gc.out >&2; fail "gc released the lease of job $c that Slurm still knows"; }
fake=/tmp/t55-fake-slurm
mkdir -p "$fake"
cat >"$fake/scontrol" <<EOF
#!/bin/sh
# Slurm forgot job $c (as after MinJobAge); every other question goes to the real scontrol.
case " \$* " in *" $c "*) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1 ;; esac
exec $(command -v scontrol) "\$@"
EOF
chmod 755 "$fake/scontrol"
PATH="$fake:$PATH" slurm-ckpt gc >/tmp/t55-gc.out 2>&1 || { cat /tmp/t55-gc.out >&2; fail "slurm-ckpt gc failed"; }
grep -q "released .*address lease of job $c " /tmp/t55-gc.out || { cat /tmp/t55-gc.out >&2; fail "gc did not release job $c's lease"; }
[ ! -e "$leases/jobs/$c.json" ] || fail "job $c's lease record is still there"
ls "$leases/units" | xargs -r -I{} cat "$leases/units/{}" 2>/dev/null | has "\"job\":$c," &&
    fail "units of job $c's lease are still taken"
rm -rf "$fake"
say "gc released the stale lease of job $c: $(grep "address lease of job $c" /tmp/t55-gc.out | cut -c1-120)"
