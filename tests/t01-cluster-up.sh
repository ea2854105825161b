#!/bin/bash
# The virtual cluster is up: every node idle, every node's own dockerd has the test image and the
# container network, nodes have their own hostnames and addresses.
. "$(dirname "$0")/lib.sh"
for n in $VC_NODES; do
    [ "$(sinfo -h -n "$n" -o %T)" = idle ] || fail "$n is not idle: $(sinfo -h -n "$n" -o %T)"
    [ "$("$REPO/scripts/vcluster" exec "$n" hostname)" = "$n" ] || fail "$n has the wrong hostname"
    "$REPO/scripts/vcluster" exec "$n" ip -4 addr show fab0 | has "192.168.250.1${n#node}/" || fail "$n has no fabric address"
    "$REPO/scripts/vcluster" exec "$n" /usr/bin/docker image inspect "$VC_IMAGE" >/dev/null || fail "$n lacks $VC_IMAGE"
    "$REPO/scripts/vcluster" exec "$n" /usr/bin/docker network inspect ckpt-net >/dev/null || fail "$n lacks ckpt-net"
done
# Daemons are distinct per node (own data roots).
[ "$(for n in $VC_NODES; do "$REPO/scripts/vcluster" exec "$n" /usr/bin/docker info -f '{{.DockerRootDir}}'; done | sort -u | wc -l)" = "$(echo $VC_NODES | wc -w)" ] ||
    fail "nodes share a Docker data root"
say "$(echo $VC_NODES | wc -w) nodes idle with their own slurmd and dockerd"
