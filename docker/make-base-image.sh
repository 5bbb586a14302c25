#!/usr/bin/env bash
# Build a Debian bookworm base image with python3 from Debian packages, for
# machines that reach a Debian mirror but no container registry. The result
# stands in for python:3.11-slim-bookworm via `--build-arg BASE_IMAGE=...`.
#
#   docker/make-base-image.sh [TAG]        (default TAG: gan-local/python:3.11-bookworm)
#
# The image is cached by tag: a second call with the tag present does nothing.
# Env: DEBIAN_MIRROR (default: first http mirror in this host's apt sources,
# else http://deb.debian.org/debian), FORCE=1 to rebuild.
set -euo pipefail

tag="${1:-gan-local/python:3.11-bookworm}"

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag already present"
    exit 0
fi

host_mirror() {
    # The mirror this host's apt uses for the main archive (deb822 or one-line
    # format); http only, because the build container cannot verify this
    # network's TLS.
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -vE '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' |
        sed -E 's#^https://#http://#; s#/? *$##' | head -n 1 || true
}
mirror="${DEBIAN_MIRROR:-$(host_mirror)}"
mirror="${mirror:-http://deb.debian.org/debian}"

command -v debootstrap >/dev/null || {
    echo "debootstrap is missing: apt-get install -y debootstrap" >&2
    exit 1
}

rootfs="$(mktemp -d /tmp/gan-base-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

echo "debootstrap bookworm from $mirror into $rootfs"
nice -n 10 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"

# Same suites as the official images, so later apt-get installs get fixes.
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
# Keep the image small, like the official slim images do (their apt config
# drops downloaded packages and caches after every install).
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*

tar -C "$rootfs" --numeric-owner -c . |
    docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' \
        - "$tag" >/dev/null
echo "built base image $tag"
