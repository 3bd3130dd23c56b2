#!/bin/sh
# Install what the k8s-lab test bed needs on a Debian/Ubuntu machine (CI or a developer box).
# Idempotent and quiet: installs only what is missing. Needs root.
set -eu
# gnupg and apt-utils (apt-ftparchive; dpkg-deb is in dpkg): the source tests make a signed
# apt repository of stand-in packages (tests/testbed/artifacts.py).
PKGS="debootstrap systemd-container iproute2 iptables openssh-client busybox-static ca-certificates debian-archive-keyring python3 gnupg apt-utils"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "testbed: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -qq update >/dev/null
    # shellcheck disable=SC2086
    apt-get -qq install -y --no-install-recommends $missing >/dev/null
fi
