#!/bin/bash
# The checkpoint storage's server goes away while a job runs (--storage=gluster only): a checkpoint
# then fails within the site timeout (plus a margin) naming the storage, the job runs on (its
# containers not left paused), nothing is committed; once the server is back the next checkpoint
# succeeds and a requeue restores from it, and the job verifies. docs/STORAGE.md.
. "$(dirname "$0")/lib.sh"
if [ "${VC_STORAGE:-local}" != gluster ]; then
    say "SKIP: needs the cluster on a network filesystem (vcluster up --storage=gluster), it runs on ${VC_STORAGE:-local}"
    exit 0
fi
# A short site timeout, so that a wait that is not bounded would show as a test timeout.
site_timeout=60
margin=45
with_site timeout=$site_timeout
storage_back() { "$REPO/scripts/vcluster" storage start >/dev/null 2>&1 || true; }
trap 'storage_back; cp "/tmp/$TEST_NAME.plugstack.orig" /etc/slurm/plugstack.conf' EXIT

id=$(submit -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 50 --min-seconds 150 --sleep-ms 5")
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 2 120
wait_output "$id" "^cg: solve"
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "first checkpoint of job $id failed"; }
say "generation 1 committed"

"$REPO/scripts/vcluster" storage stop
# The CLI reads the ranks' records from the storage: it must give up on it, not hang.
t0=$SECONDS
if timeout $((site_timeout + margin)) slurm-ckpt checkpoint "$id" 2>/tmp/t60-cli.err; then
    fail "a checkpoint succeeded with the storage server stopped"
fi
[ $((SECONDS - t0)) -lt $((site_timeout + margin)) ] || fail "slurm-ckpt checkpoint did not give up within $((site_timeout + margin))s"
has -e "$VC_CKPT_ROOT" -e "checkpoint storage" /tmp/t60-cli.err ||
    fail "the CLI's error does not name the storage: $(cat /tmp/t60-cli.err)"
say "slurm-ckpt checkpoint failed in $((SECONDS - t0))s: $(tail -1 /tmp/t60-cli.err)"

# The supervisors themselves, asked as `slurm-ckpt checkpoint` asks them (the CLI above may have
# given up before signalling): each must fail its checkpoint within the bound and thaw.
t0=$SECONDS
scancel --signal=USR1 "$id" || fail "cannot signal job $id"
wait_output "$id" "checkpoint failed, job continues: .*($VC_CKPT_ROOT|checkpoint storage)" $((site_timeout + margin))
say "the ranks' checkpoint failed in $((SECONDS - t0))s: $(job_out "$id" | grep 'checkpoint failed, job continues' | tail -1)"
sleep 3
[ "$(job_field "$id" JobState)" = RUNNING ] || { show_job "$id"; fail "job $id stopped after a failed checkpoint"; }
[ "$(paused_count "$id")" = 0 ] || fail "containers left frozen after the storage went away"
[ "$(container_ids "$id" | wc -l)" = 2 ] || fail "job $id lost a container"
job_out "$id" | has -E "^VERIFICATION|Terminated|Killed" && fail "the program ended early: $(job_out "$id" | tail -3)"

"$REPO/scripts/vcluster" storage start
# Clients reconnect on their own; give them a moment and check that they see the storage again.
end=$((SECONDS + 60))
until slurm-ckpt status "$id" --json >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || fail "the storage did not come back on the host's client"
    sleep 1
done
sleep 2
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "the first checkpoint after the storage came back failed"; }
gens="$(slurm-ckpt list "$id" --json | jq -r '[.[].manifest.generation] | map(tostring) | join(",")')"
say "generations after the storage came back: $gens"
last="${gens##*,}"
[ "$last" -gt 1 ] || fail "no new generation after the storage came back (have $gens)"
# No half-written generation was made visible while the storage was down.
[ "$(find "$VC_CKPT_ROOT/$VC_USER/$id" -maxdepth 1 -name 'g*' -type d | wc -l)" = "$(echo "$gens" | tr ',' '\n' | wc -l)" ] ||
    fail "generation directories and verified manifests differ: $(ls -a "$VC_CKPT_ROOT/$VC_USER/$id")"

# The requeue checkpoints once more on SIGTERM: the restore is from that one or, if it failed,
# from the one above; never from scratch and never from before the outage.
requeue_now "$id"
expect_ok "$id" 400
restored="$(grep -o 'restored from .*/g[0-9]*/' "/var/log/slurm-ckpt/job-$id.log" | tail -1 | sed 's|.*/g0*\([0-9]*\)/$|\1|')"
[ -n "$restored" ] && [ "$restored" -ge "$last" ] ||
    { show_job "$id"; fail "job $id was not restored from generation $last or later (restored: '${restored}')"; }
say "job $id restored from generation $restored and verified"
