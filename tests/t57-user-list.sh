#!/bin/bash
# Issue 22: a user sees their own checkpoints, and only theirs. The job's rank 0 keeps the user's
# index (<ckpt_root>/.users/<user>, written as the user): `slurm-ckpt list JOB` run by the job's
# user shows its generations, a failed checkpoint's reason and, at the end, the closed state;
# another user sees none of them and can neither list .users nor read the first user's index.
. "$(dirname "$0")/lib.sh"
if [ -z "${VC_USER2:-}" ] || ! id "$VC_USER2" >/dev/null 2>&1; then
    fail "second test user missing (scripts/vcluster creates VC_USER2)"
fi
user_list() { runuser -u "$VC_USER" -- slurm-ckpt list "$@"; }
# wait_user_list JOB REGEX [SECONDS]: the user's own list of JOB matches REGEX (the index is
# updated in the background after each event).
wait_user_list() {
    local end=$((SECONDS + ${3:-30}))
    until user_list "$1" 2>/dev/null | has -E "$2"; do
        [ "$SECONDS" -lt "$end" ] || { user_list "$1" || true; show_job "$1"; fail "the user's list of job $1 does not show '$2'"; }
        sleep 1
    done
}
index="$VC_CKPT_ROOT/.users/$VC_USER"
id=$(submit -N2 -n4 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/ring --seconds 60 --sleep-ms 5")
blocker="$VC_CKPT_ROOT/$VC_USER/$id/.g0002.tmp"
trap 'rm -f "$blocker"' EXIT
wait_state "$id" RUNNING 60 || fail "job $id did not start"
wait_running_ranks "$id" 4
sleep 3
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "checkpoint of job $id failed"; }
# "JOB USER GEN RANKS ...": the user's row of generation 1 with 4 ranks.
wait_user_list "$id" "^ *$id +$VC_USER +1 +4 .*restart point"
say "the user lists generation 1: $(user_list "$id" | sed -n 2p | tr -s ' ')"
[ "$(user_list "$id" --json | jq -r '.[0].generations | map(.generation) | join(",")')" = 1 ] ||
    fail "the user's --json list: $(user_list "$id" --json)"
[ "$(stat -c '%U %a' "$index")" = "$VC_USER 700" ] || fail "index dir: $(stat -c '%U %a' "$index")"
[ "$(stat -c '%U %a' "$VC_CKPT_ROOT/.users")" = "root 711" ] || fail ".users: $(stat -c '%U %a' "$VC_CKPT_ROOT/.users")"

# Another user: nothing of it.
other="$(runuser -u "$VC_USER2" -- slurm-ckpt list)" || fail "$VC_USER2's list failed"
if printf '%s\n' "$other" | tail -n +2 | has -E "^ *$id "; then
    fail "$VC_USER2 sees job $id: $other"
fi
runuser -u "$VC_USER2" -- slurm-ckpt list "$id" --json | jq -e 'length == 0' >/dev/null ||
    fail "$VC_USER2's --json list of job $id is not empty"
runuser -u "$VC_USER2" -- ls "$index" >/dev/null 2>&1 && fail "$VC_USER2 can list $index"
runuser -u "$VC_USER2" -- cat "$index/$id.json" >/dev/null 2>&1 && fail "$VC_USER2 can read $index/$id.json"
runuser -u "$VC_USER2" -- ls "$VC_CKPT_ROOT/.users" >/dev/null 2>&1 && fail "$VC_USER2 can list .users"
say "$VC_USER2 sees none of job $id"

# A failed checkpoint: its generation's temporary directory cannot be made (a file in its place).
touch "$blocker"
if slurm-ckpt checkpoint "$id" 2>/dev/null; then
    fail "the checkpoint succeeded although $blocker blocks it"
fi
wait_user_list "$id" "^job $id: checkpoint failed g0002 .*\.g0002\.tmp"
say "the user sees why: $(user_list "$id" | grep "checkpoint failed" | head -1)"
rm -f "$blocker"
[ "$(job_field "$id" JobState)" = RUNNING ] || { show_job "$id"; fail "job $id stopped after a failed checkpoint"; }
runuser -u "$VC_USER" -- slurm-ckpt status "$id" 2>/dev/null | has "last checkpoint g0001" ||
    fail "the user's status of job $id: $(runuser -u "$VC_USER" -- slurm-ckpt status "$id" 2>&1)"

expect_ok "$id" 300
# The job ended normally: its generations are closed, in the user's list too.
wait_user_list "$id" "^ *$id +$VC_USER +1 +4 .*closed"
say "after the job: $(user_list "$id" | sed -n 2p | tr -s ' ')"
# Root's list is unchanged: it reads the checkpoint areas, not the index.
slurm-ckpt list "$id" | tail -n +2 | has -E "^ *$id +$VC_USER +1 " || fail "root's list: $(slurm-ckpt list "$id")"
