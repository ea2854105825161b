#!/bin/bash
# What a site installs is what is installed: the Debian package (scripts/install ran it through
# dpkg), its files where the package says and unmodified, the manual pages render, lintian finds no
# errors in the built package, and node-setup on a half-configured node image names exactly what
# is missing, sets it up, and a second run changes nothing. Needs no job and no running cluster.
. "$(dirname "$0")/lib.sh"
. "$REPO/scripts/lib.sh"

# --- the package ---
[ "$(dpkg-query -W -f='${Status}' "$PKG_NAME" 2>/dev/null)" = "install ok installed" ] ||
    fail "$PKG_NAME is not installed (scripts/install)"
version="$(dpkg-query -W -f='${Version}' "$PKG_NAME")"
for f in "$PKG_PLUGIN" "$PKG_HELPER" "$PKG_RUNC" /usr/share/man/man1/slurm-ckpt.1.gz \
    /usr/share/man/man1/slurm-ckpt-node-setup.1.gz /usr/share/man/man8/container_ckpt.8.gz \
    /etc/slurm/plugstack.conf.d/container_ckpt.conf /usr/share/doc/slurm-container-ckpt/copyright; do
    [ -f "$f" ] || fail "$f missing"
    dpkg -S "$f" >/dev/null 2>&1 || fail "$f is not the package's"
done
[ -x "$PKG_HELPER" ] && [ -x "$PKG_RUNC" ] || fail "helper or wrapper not executable"
# Installing activates nothing: the snippet's plugin line is commented out.
grep -q '^required' /etc/slurm/plugstack.conf.d/container_ckpt.conf && fail "the package's plugstack snippet is active"
# Nothing changed since dpkg put it there (a stale /usr/local copy would shadow it on PATH).
out="$(dpkg -V "$PKG_NAME" 2>&1)" || true
[ -z "$out" ] || fail "dpkg -V $PKG_NAME: $out"
for f in /usr/local/bin/slurm-ckpt /usr/local/bin/slurm-ckpt-runc /usr/local/lib/slurm-container-ckpt; do
    [ ! -e "$f" ] || fail "$f left over from the old install: it shadows the package's"
done
[ "$(command -v slurm-ckpt)" = "$PKG_HELPER" ] || fail "slurm-ckpt on PATH is $(command -v slurm-ckpt), not $PKG_HELPER"
grep -q "^required $PKG_PLUGIN " /etc/slurm/plugstack.conf ||
    fail "the cluster's plugstack.conf does not load $PKG_PLUGIN"
say "$PKG_NAME $version installed, files unmodified"

# --- manual pages ---
page() { MANWIDTH=100 man -P cat "$@" 2>&1; }
txt="$(page slurm-ckpt)" || fail "man slurm-ckpt: $txt"
for w in checkpoint node-setup status; do
    grep -q -- "$w" <<<"$txt" || fail "man slurm-ckpt does not mention $w"
done
txt="$(page slurm-ckpt-node-setup)" || fail "man slurm-ckpt-node-setup: $txt"
grep -q -- "--uid-range" <<<"$txt" || fail "man slurm-ckpt-node-setup lacks --uid-range"
txt="$(page 8 container_ckpt)" || fail "man container_ckpt: $txt"
for w in container-image ckpt_root image_allowlist keep_generations plugstack.conf; do
    grep -q -- "$w" <<<"$txt" || fail "man container_ckpt does not mention $w"
done
say "man slurm-ckpt, slurm-ckpt-node-setup and container_ckpt render"

# --- lintian on the package that is installed ---
deb="$REPO/target/debian/${PKG_NAME}_${version}_amd64.deb"
[ -f "$deb" ] || fail "$deb (the installed version) is not in target/debian"
out="$(lintian --fail-on error "$deb" 2>&1)" || fail "lintian reports errors: $(grep '^E:' <<<"$out")"
say "lintian: no errors ($(grep -c '^W:' <<<"$out" || true) warnings)"

# --- node-setup on a half-configured node image ---
tree="$(mktemp -d /tmp/t03-node.XXXXXX)"
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/etc/docker" "$tree/etc/criu" "$tree/etc/slurm/plugstack.conf.d"
# dockerd has experimental and a site key; the remap user exists (useradd is the system's);
# another user has useradd's usual range at 100000; CRIU's config lacks ghost-limit; plugstack.conf
# does not include the snippet directory (whose plugin line the admin has enabled).
echo '{"experimental": true, "log-driver": "journald"}' >"$tree/etc/docker/daemon.json"
printf 'root:x:0:0::/root:/bin/bash\nslurmckpt:x:999:999::/nonexistent:/usr/sbin/nologin\n' >"$tree/etc/passwd"
echo 'alice:100000:65536' >"$tree/etc/subuid"
echo 'alice:100000:65536' >"$tree/etc/subgid"
echo 'tcp-established' >"$tree/etc/criu/runc.conf"
echo '# site plugins' >"$tree/etc/slurm/plugstack.conf"
echo "required $PKG_PLUGIN ckpt_root=/shared/ckpt" >"$tree/etc/slurm/plugstack.conf.d/container_ckpt.conf"

rc=0
out="$(slurm-ckpt node-setup --check --json --root "$tree")" || rc=$?
[ "$rc" = 1 ] || fail "node-setup --check on a half-configured node exited $rc, not 1"
missing="$(jq -r '[.[] | select(.ok | not) | .item] | join(" ")' <<<"$out")"
[ "$missing" = "plugstack live-restore userns-remap runtime subuid subgid criu-conf" ] ||
    fail "node-setup --check names '$missing' as missing"
say "node-setup --check names exactly what is missing: $missing"

out="$(slurm-ckpt node-setup --json --root "$tree")" || fail "node-setup failed: $out"
changed="$(jq -r '[.steps[] | select(.outcome == "changed") | .item] | join(" ")' <<<"$out")"
[ "$changed" = "daemon.json subuid subgid criu-conf plugstack" ] || fail "node-setup changed '$changed'"
jq -e '.restart | map(startswith("dockerd")) | any' <<<"$out" >/dev/null ||
    fail "node-setup does not say dockerd must be restarted"
[ "$(jq -r '."log-driver"' "$tree/etc/docker/daemon.json")" = journald ] || fail "node-setup dropped a daemon.json key"
grep -qx 'alice:100000:65536' "$tree/etc/subuid" || fail "node-setup dropped another user's range"
slurm-ckpt node-setup --check --root "$tree" >/dev/null || fail "node-setup --check fails after node-setup"

before="$(cd "$tree" && find . -type f | sort | xargs sha256sum)"
out="$(slurm-ckpt node-setup --json --root "$tree")" || fail "second node-setup failed: $out"
changed="$(jq -r '[.steps[] | select(.outcome != "unchanged") | .item] | join(" ")' <<<"$out")"
[ -z "$changed" ] || fail "second node-setup changed '$changed'"
[ "$(jq '.restart | length' <<<"$out")" = 0 ] || fail "second node-setup asks for a restart"
[ "$(cd "$tree" && find . -type f | sort | xargs sha256sum)" = "$before" ] || fail "second node-setup rewrote a file"
say "node-setup set the node image up; a second run changed nothing"
