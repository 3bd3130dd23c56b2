#!/bin/sh
# Install what the k8s-lab test bed needs on a Debian/Ubuntu machine (CI or a developer box).
# Idempotent and quiet: installs only what is missing. Needs root.
set -eu
# gnupg and apt-utils (apt-ftparchive; dpkg-deb is in dpkg): the source tests make a signed
# apt repository of stand-in packages (tests/testbed/artifacts.py). openssl and docker-registry:
# the e2e stand-ins of the public endpoints (tests/e2e/standins.py: a test CA, a registry).
PKGS="debootstrap systemd-container iproute2 iptables openssh-client busybox-static ca-certificates debian-archive-keyring python3 gnupg apt-utils openssl docker-registry"
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
# Installed here, the package's own registry (on :5000, every address, where systemd runs) is
# turned off again: the tests start theirs, on the bed's bridge only.
case " $missing " in *" docker-registry "*)
    if [ -d /run/systemd/system ]; then systemctl disable --now docker-registry >/dev/null 2>&1; fi
esac
