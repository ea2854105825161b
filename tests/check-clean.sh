#!/bin/bash
# After `scripts/vcluster down`: no namespace, process, mount, link, iptables rule, hosts entry or
# state directory of the virtual cluster may remain — and nothing else was touched (other Slurm or
# Docker processes on the machine are not ours to stop).
set -uo pipefail
has() { grep "$@" >/dev/null; }
bad=0
problem() { echo "  [check-clean] LEFT BEHIND: $*" >&2; bad=1; }
ip netns list 2>/dev/null | grep -E '^(node[0-9]+|vcstore)' && problem "network namespaces"
ip -o link show 2>/dev/null | grep -E ' (vcfabric|vc-node[0-9]+|vc-store)[@:]' && problem "links"
# --storage=gluster: its server, brick and clients (found by our volume and server address).
pgrep -a -f -- '-f /var/lib/vc/gluster/|--volfile-id vcckpt\.|--volfile-id=/vcckpt' && problem "gluster processes"
pgrep -a -f '^(slurmd -N node|slurmctld)|/run/vc/' && problem "processes"
# Step daemons of our nodes: outside the host's network namespace, with a node's hostname (their
# namespaces are gone now, so that is what identifies them). A site's own slurmstepd is not ours.
host_net="$(readlink /proc/1/ns/net)"
for pid in $(pgrep -x slurmstepd); do
    [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" != "$host_net" ] &&
        nsenter -t "$pid" -u hostname 2>/dev/null | has -E '^node[0-9]+$' &&
        problem "slurmstepd $pid of a virtual node"
done
pgrep -a -x dockerd | has -- '--data-root /var/lib/vc' && problem "dockerd"
grep -E ' (/var/lib/vc|/run/vc)' /proc/self/mountinfo && problem "mounts"
iptables -S FORWARD 2>/dev/null | has slurm-container-ckpt-vcluster && problem "iptables rule"
grep -q 'slurm-container-ckpt vcluster' /etc/hosts && problem "/etc/hosts entries"
[ -e /var/lib/vc ] && problem "/var/lib/vc"
[ -e /run/vc ] && problem "/run/vc"
ls -d /sys/fs/cgroup/*/vc-node* 2>/dev/null && problem "cgroups"
[ "$bad" = 0 ] && echo "  [check-clean] nothing left behind" >&2
exit "$bad"
