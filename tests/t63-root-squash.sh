#!/bin/bash
# Root-squashed checkpoint storage (--storage=gluster only): root on every node is a dedicated
# account on the storage (GlusterFS server.root-squash + server.anonuid, as NFS root_squash with
# anonuid=). With the site's storage_root_uid set to that account and the checkpoint root owned by
# it, a 2-node job checkpoints and is restored onto other nodes as usual and verifies; its images
# belong to that account, the user cannot read them, and the user lists their own checkpoints
# (the index directory made by the user's own child: root cannot hand one over; one of that name that
# another user made first is moved aside). docs/STORAGE.md.
. "$(dirname "$0")/lib.sh"
if [ "${VC_STORAGE:-local}" != gluster ]; then
    say "SKIP: needs the cluster on a network filesystem (vcluster up --storage=gluster), it runs on ${VC_STORAGE:-local}"
    exit 0
fi
uid="${VC_SQUASH_UID:?vcluster env has no VC_SQUASH_UID}"
# A checkpoint root of its own, as a site would make it (a dot name: the cluster's own root's gc
# leaves it alone). Made before squashing: then root may still chown.
sq="$VC_CKPT_ROOT/.squash-t63"
rm -rf "$sq"
mkdir "$sq" && chown "$uid:$uid" "$sq" && chmod 0711 "$sq" || fail "cannot make $sq"
with_site ckpt_root="$sq" storage_root_uid="$uid"
cleanup() {
    "$REPO/scripts/vcluster" storage root-squash off >/dev/null 2>&1 || true
    cp "/tmp/$TEST_NAME.plugstack.orig" /etc/slurm/plugstack.conf
    rm -rf "$sq"
}
trap cleanup EXIT
"$REPO/scripts/vcluster" storage root-squash on
touch "$sq/.probe" && [ "$(stat -c %u "$sq/.probe")" = "$uid" ] || fail "root on the host is not uid $uid on the squashed storage"
rm -f "$sq/.probe"

# Another user squats the index directory of $VC_USER's name before $VC_USER's first job (the
# index top is sticky and open to all under squash, as an earlier job of anyone leaves it): it is
# moved aside, and $VC_USER still gets an index of their own.
mkdir -m 1733 "$sq/.users" && chmod 1733 "$sq/.users" || fail "cannot make $sq/.users"
runuser -u "$VC_USER2" -- sh -c "mkdir -m 0755 '$sq/.users/$VC_USER' && echo '{}' > '$sq/.users/$VC_USER/bogus.json'" ||
    fail "$VC_USER2 cannot make $sq/.users/$VC_USER"

id=$(submit -w node1,node2 -N2 -n2 --open-mode=append --container-image="$VC_IMAGE" --container-ckpt \
    --wrap "srun /opt/ckpt-tests/bin/cg --n 20 --mem-mb 50 --min-seconds 60 --sleep-ms 5")
wait_state "$id" RUNNING 60 || { show_job "$id"; fail "job $id did not start on squashed storage"; }
wait_running_ranks "$id" 2 120
wait_output "$id" "^cg: solve"
slurm-ckpt checkpoint "$id" || { show_job "$id"; fail "checkpoint of job $id on squashed storage failed"; }
gen="$sq/$VC_USER/$id/g0001"
owners="$(stat -c %u "$gen" "$gen/manifest.json" "$gen"/rank-*/* | sort -u | paste -sd,)"
[ "$owners" = "$uid" ] || fail "files of $gen belong to uids $owners, expected only $uid"
runuser -u "$VC_USER" -- ls "$sq/$VC_USER" >/dev/null 2>&1 && fail "$VC_USER can list $sq/$VC_USER"
runuser -u "$VC_USER" -- cat "$gen/manifest.json" >/dev/null 2>&1 && fail "$VC_USER can read $gen/manifest.json"
say "g0001 committed on squashed storage, every file uid $uid, $VC_USER cannot read it"

runuser -u "$VC_USER" -- slurm-ckpt list "$id" --json | jq -e 'length == 1' >/dev/null ||
    fail "$VC_USER does not see the checkpoint of job $id: $(runuser -u "$VC_USER" -- slurm-ckpt list "$id" 2>&1)"
[ "$(stat -c '%u %a' "$sq/.users/$VC_USER")" = "$(id -u "$VC_USER") 700" ] ||
    fail "$sq/.users/$VC_USER: $(stat -c '%u %a' "$sq/.users/$VC_USER"), expected $VC_USER's and 0700"
runuser -u "$VC_USER2" -- ls "$sq/.users" >/dev/null 2>&1 && fail "$VC_USER2 can list $sq/.users"
aside="$(find "$sq/.users" -maxdepth 1 -name ".squatted-$VC_USER-*" -user "$VC_USER2" | head -1)"
[ -n "$aside" ] && [ -f "$aside/bogus.json" ] || fail "$VC_USER2's $sq/.users/$VC_USER was not moved aside: $(ls -la "$sq/.users")"
grep -q 'a user index directory made by another user was moved aside' "/var/log/slurm-ckpt/job-$id.log" ||
    fail "no log line says that the squatted index directory was moved aside"
say "$VC_USER lists the checkpoint (own index directory; $VC_USER2's squatted one moved aside); $VC_USER2 cannot list the index"

requeue_restored "$id" node2,node3 2
expect_ok "$id" 300
say "job $id restored on node2,node3 from squashed storage and verified"
