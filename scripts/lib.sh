# Shared shell helpers for scripts/*. Sourced, not executed.
# shellcheck shell=bash

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${SCC_CACHE_DIR:-/var/cache/slurm-container-ckpt}"
CRIU_VERSION="4.2.1"
CRIU_MIN="4.2"

log() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0")" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

# Where the Debian package (scripts/package, helper/Cargo.toml [package.metadata.deb]) installs
# the product; scripts/install installs that package, so these are the only paths used anywhere.
PKG_NAME=slurm-container-ckpt
PKG_PLUGIN=/usr/lib/x86_64-linux-gnu/slurm-wlm/spank_container_ckpt.so
PKG_HELPER=/usr/bin/slurm-ckpt
PKG_RUNC=/usr/bin/slurm-ckpt-runc
# The cargo-deb scripts/package builds with (scripts/setup installs exactly this one).
CARGO_DEB_VERSION="3.8.0"

# Docker's own CLI for the 20.10 daemon; the machine may ship a newer one in /usr/local/bin.
DOCKER=/usr/bin/docker

# version_ge A B: true when dotted version A >= B.
version_ge() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]; }

# criu_ok: true when a CRIU >= $CRIU_MIN is on PATH and `criu check` passes on this kernel.
criu_ok() {
    command -v criu >/dev/null 2>&1 || return 1
    local v
    v="$(criu --version 2>/dev/null | awk '/^Version:/ {print $2}')"
    [ -n "$v" ] && version_ge "$v" "$CRIU_MIN" || return 1
    criu check >/dev/null 2>&1
}
