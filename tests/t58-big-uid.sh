#!/bin/bash
# Issue 22: a job user with a uid above 65535 (as at sites with LDAP/AD ids) whose project directory
# on the shared storage is reachable only through a supplementary group:
#  - a uid above the nodes' userns-remap identity range is refused at start, naming the id and the
#    file to extend (IdNotMapped), and leaves no container;
#  - uid 300001 with supplementary group ckptproj (gid 300100) runs 2 ranks on 2 nodes: inside the
#    containers `id -G` shows 300100, and a file a rank writes into the project directory (root:ckptproj
#    2770, bind-mounted with --container-mounts) is 300001:300100 on the host;
#  - checkpoint, then requeue: the ranks are restored on other nodes, still with the group, and the
#    ring verifies its result.
# Needs a cluster from `scripts/vcluster up` whose node-setup maps ids up to VC_UID_RANGE (400000).
# Users, groups and directories it creates are removed at exit; /etc/subuid and /etc/subgid are kept
# exactly as they were (dockerd reads them at its next start).
. "$(dirname "$0")/lib.sh"
BIG_USER=ckptbig BIG_UID=300001
PROJ_GROUP=ckptproj PROJ_GID=300100
FAR_USER=ckptfar FAR_UID=450001
BIG_JOBS="/home/$BIG_USER/jobs"
FAR_JOBS="/home/$FAR_USER/jobs"
PROJ="$VC_SHARED/t58-proj"

# --- cleanup: only what this test created ---
created=()
jobs_started=()
saved="$(mktemp -d /tmp/t58.XXXXXX)"
cp -a /etc/subuid "$saved/subuid" 2>/dev/null || touch "$saved/subuid"
cp -a /etc/subgid "$saved/subgid" 2>/dev/null || touch "$saved/subgid"
# useradd/userdel may add or drop subordinate ranges (or re-sort the files): put them back.
keep_subids() {
    local f
    for f in subuid subgid; do
        cmp -s "$saved/$f" "/etc/$f" || cp "$saved/$f" "/etc/$f"
    done
}
cleanup() {
    local id i
    for id in "${jobs_started[@]}"; do scancel "$id" 2>/dev/null || true; done
    for id in "${jobs_started[@]}"; do wait_job "$id" 60 >/dev/null 2>&1 || true; done
    rm -rf "$PROJ"
    for ((i = ${#created[@]} - 1; i >= 0; i--)); do
        case "${created[i]}" in
        user:*) userdel -r -f "${created[i]#user:}" >/dev/null 2>&1 || true ;;
        group:*) groupdel "${created[i]#group:}" >/dev/null 2>&1 || true ;;
        area:*) rm -rf "${created[i]#area:}" ;;
        esac
    done
    keep_subids
    rm -rf "$saved"
}
trap cleanup EXIT

# ensure_group NAME GID / ensure_user NAME UID PRIMARY-GROUP [SUPPLEMENTARY]: create once; an existing
# one must have the expected id (a leftover of an earlier run is reused, not recreated).
ensure_group() {
    local have
    have="$(getent group "$1" | cut -d: -f3 || true)"
    if [ -z "$have" ]; then
        getent group "$2" >/dev/null && fail "gid $2 is taken by $(getent group "$2" | cut -d: -f1)"
        groupadd -g "$2" "$1" || fail "groupadd $1 failed"
        created+=("group:$1")
    elif [ "$have" != "$2" ]; then
        fail "group $1 exists with gid $have, expected $2"
    fi
}
ensure_user() {
    local name="$1" uid="$2" group="$3" extra="${4:-}" have
    have="$(id -u "$name" 2>/dev/null || true)"
    if [ -z "$have" ]; then
        getent passwd "$uid" >/dev/null && fail "uid $uid is taken by $(getent passwd "$uid" | cut -d: -f1)"
        useradd -u "$uid" -g "$group" ${extra:+-G "$extra"} -m -s /bin/bash "$name" || fail "useradd $name failed"
        created+=("user:$name")
    elif [ "$have" != "$uid" ]; then
        fail "user $name exists with uid $have, expected $uid"
    elif [ -n "$extra" ]; then
        usermod -a -G "$extra" "$name" || fail "usermod -G $extra $name failed"
    fi
    keep_subids
    mkdir -p "/home/$name/jobs"
    chown "$name:" "/home/$name/jobs"
}

# identity_max FILE USER: N when USER's ranges in FILE map ids 1..N to themselves (a line USER:1:N),
# else 0.
identity_max() {
    awk -F: -v u="$2" '$1 == u && $2 == 1 {print $3; found = 1} END {if (!found) print 0}' "$1" | head -n1
}
# The remap user: the one the nodes' dockerd use (node-setup wrote it into their daemon.json).
remap="$(jq -r '."userns-remap" // empty' "/var/lib/vc/${VC_NODES%% *}/daemon.json" 2>/dev/null || true)"
[ -n "$remap" ] || remap=slurmckpt
max_uid="$(identity_max /etc/subuid "$remap")"
max_gid="$(identity_max /etc/subgid "$remap")"
say "remap user $remap: uids 1..$max_uid, gids 1..$max_gid map to themselves"

ensure_group "$BIG_USER" "$BIG_UID"
ensure_group "$PROJ_GROUP" "$PROJ_GID"
ensure_user "$BIG_USER" "$BIG_UID" "$BIG_USER" "$PROJ_GROUP"
id -G "$BIG_USER" | tr ' ' '\n' | has -x "$PROJ_GID" || fail "$BIG_USER is not in group $PROJ_GROUP: $(id "$BIG_USER")"
created+=("area:$VC_CKPT_ROOT/$BIG_USER")

# The project directory: only the group reaches it; new files take its group (setgid).
rm -rf "$PROJ"
mkdir -m 2770 "$PROJ"
chown "root:$PROJ_GROUP" "$PROJ"
chmod 2770 "$PROJ"
runuser -u "$VC_USER" -- test -w "$PROJ" && fail "$VC_USER can write $PROJ: the test would prove nothing"

# submit_as USER JOBDIR SBATCH-ARGS...: prints the job id (or sbatch's error; rc kept).
submit_as() {
    local user="$1" dir="$2"; shift 2
    (cd "$dir" && runuser -u "$user" -- sbatch --parsable -o "$dir/%j.out" -e "$dir/%j.out" "$@" 2>&1)
}
big_out() { cat "$BIG_JOBS/$1.out" 2>/dev/null || true; }
show_big() { show_job "$1"; echo "----- job $1: output ($BIG_JOBS) -----" >&2; big_out "$1" | tail -n 40 >&2; }

# refused_at_start USER JOBDIR UID: the user's job fails at start, naming the uid outside the map.
refused_at_start() {
    local user="$1" dir="$2" uid="$3" id st msg
    id="$(submit_as "$user" "$dir" -N1 -n1 --container-image="$VC_IMAGE" --wrap "srun true")" ||
        fail "sbatch as $user failed: $id"
    jobs_started+=("$id")
    st="$(wait_job "$id" 120)" || { show_big "$id"; fail "job $id of $user did not end"; }
    [ "$st" = FAILED ] || { show_job "$id"; cat "$dir/$id.out" >&2 || true; fail "job $id of uid $uid ended $st, expected FAILED"; }
    msg="$(cat "$dir/$id.out" "/var/log/slurm-ckpt/job-$id.log" 2>/dev/null | grep -m1 "uid $uid of the job is outside the user-namespace mapping" || true)"
    [ -n "$msg" ] || { show_job "$id"; cat "$dir/$id.out" >&2 || true; fail "job $id of uid $uid failed without the IdNotMapped message"; }
    grep -q "/etc/subuid" <<<"$msg" || fail "the refusal does not name /etc/subuid: $msg"
    [ "$(containers_of "$id")" = 0 ] || fail "job $id left containers behind"
    say "uid $uid refused at start: $(grep -o 'uid .*' <<<"$msg" | cut -c1-150)"
}

# --- a uid outside the identity range is refused clearly ---
if [ "$max_uid" -lt "$BIG_UID" ] || [ "$max_gid" -lt "$PROJ_GID" ]; then
    # An older cluster (ids 1..65535): the product must say what to change. Widening the range on a
    # live cluster would move every node's Docker data root (container root gets another host id):
    # that is `scripts/vcluster up`'s job.
    [ "$max_uid" -lt "$BIG_UID" ] && refused_at_start "$BIG_USER" "$BIG_JOBS" "$BIG_UID"
    fail "the nodes map ids only up to $max_uid (uid) / $max_gid (gid), $BIG_UID and $PROJ_GID are needed: bring the cluster up again with this scripts/vcluster (node-setup --uid-range \${VC_UID_RANGE:-400000})"
fi
if [ "$max_uid" -lt "$FAR_UID" ]; then
    ensure_user "$FAR_USER" "$FAR_UID" users
    refused_at_start "$FAR_USER" "$FAR_JOBS" "$FAR_UID"
else
    say "the nodes map uids up to $max_uid: no uid above the range to refuse (skipped)"
fi

# --- uid 300001 with its project group, through a checkpoint and a restore ---
cat >"$BIG_JOBS/t58-rank.sh" <<'EOF'
#!/bin/sh
# One rank of t58: its groups and a file in the project directory, then the ring.
r="${SLURM_PROCID:-$(hostname)}"
id -G >"/proj/ids.r$r" && echo "rank $r uid $(id -u)" >"/proj/hello.r$r" || { echo "rank $r: cannot write /proj" >&2; exit 1; }
exec /opt/ckpt-tests/bin/ring "$@"
EOF
chmod 755 "$BIG_JOBS/t58-rank.sh"
chown "$BIG_USER:" "$BIG_JOBS/t58-rank.sh"
id="$(submit_as "$BIG_USER" "$BIG_JOBS" -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" \
    --container-ckpt --container-mounts="$PROJ:/proj" --wrap "srun $BIG_JOBS/t58-rank.sh --seconds 60 --sleep-ms 5")" ||
    fail "sbatch as $BIG_USER failed: $id"
jobs_started+=("$id")
wait_state "$id" RUNNING 60 || { show_big "$id"; fail "job $id did not start"; }
wait_running_ranks "$id" 2
end=$((SECONDS + 60))
until [ -s "$PROJ/hello.r0" ] && [ -s "$PROJ/hello.r1" ]; do
    [ "$SECONDS" -lt "$end" ] || { show_big "$id"; ls -ln "$PROJ" >&2; fail "the ranks of job $id wrote nothing into $PROJ"; }
    sleep 0.5
done
for r in 0 1; do
    tr ' ' '\n' <"$PROJ/ids.r$r" | has -x "$PROJ_GID" ||
        fail "rank $r: id -G in the container is '$(cat "$PROJ/ids.r$r")', lacks $PROJ_GID"
    own="$(stat -c '%u:%g' "$PROJ/hello.r$r")"
    [ "$own" = "$BIG_UID:$PROJ_GID" ] || fail "rank $r's file is $own on the host, expected $BIG_UID:$PROJ_GID"
done
say "both ranks: id -G $(cat "$PROJ/ids.r0"); their files are $BIG_UID:$PROJ_GID on the host"

# ring_groups JOB: the supplementary gids of the job's ring processes, as the host sees them.
ring_groups() {
    local n c
    while read -r n c; do
        [ -n "$c" ] || continue
        /usr/bin/docker -H "unix://$VC_RUN/$n/docker.sock" top "$c" -eo pid,uid,supgid,comm 2>/dev/null |
            awk '$4 == "ring" {print $2, $3}'
    done < <(container_ids "$1")
}
check_ring_groups() { # check_ring_groups JOB WHEN
    local lines
    lines="$(ring_groups "$1")"
    [ "$(grep -c . <<<"$lines")" -ge 2 ] || { show_big "$1"; fail "$2: expected 2 ring processes, found: $lines"; }
    while read -r uid groups; do
        [ "$uid" = "$BIG_UID" ] || fail "$2: a ring process runs as uid $uid, expected $BIG_UID"
        tr ',' '\n' <<<"$groups" | has -x "$PROJ_GID" || fail "$2: a ring process has groups $groups, lacks $PROJ_GID"
    done <<<"$lines"
    say "$2: ring processes uid $BIG_UID, groups $(head -n1 <<<"$lines" | cut -d' ' -f2)"
}
check_ring_groups "$id" "before the checkpoint"

# Past the launcher's ssh handshakes (t15): CRIU cannot dump sshd's pre-auth child.
sleep 4
slurm-ckpt checkpoint "$id" >/dev/null || { show_big "$id"; fail "checkpoint of job $id failed"; }
say "checkpoint of job $id committed"
requeue_restored "$id" node2,node3 2
check_ring_groups "$id" "after the restore"

st="$(wait_job "$id" 150)" || { show_big "$id"; fail "job $id did not end ($st)"; }
if [ "$st" != COMPLETED ] || [ "$(job_field "$id" ExitCode)" != "0:0" ] || ! big_out "$id" | has '^VERIFICATION SUCCESSFUL'; then
    show_big "$id"
    fail "job $id: state $st, exit $(job_field "$id" ExitCode), expected COMPLETED 0:0 with VERIFICATION SUCCESSFUL"
fi
say "job $id of uid $BIG_UID verified after checkpoint and restore on node2,node3"
