#!/usr/bin/env bash
# contained.sh DIR COMMAND [ARGS...]: runs a container tool (buildah or
# podman, as root) so that it keeps no state on the host outside DIR; make
# image and the image tests run them through it.
#
# Even with storage of their own (--root, --runroot, podman's --tmpdir),
# these tools keep state in fixed places of the host, and leave it there
# (test/hostcheck found them): netavark's lock in /etc/containers/networks
# and its run directory /run/containers/networks, the image library's
# blob-info cache in /var/lib/containers/cache, and podman's locks in
# /dev/shm/libpod_lock. So COMMAND runs
#   - with CONTAINERS_CONF=DIR/containers.conf (written here; it replaces the
#     system's containers.conf), which moves the network configuration
#     directory into DIR and has podman keep its locks as files in its
#     --tmpdir;
#   - in a mount namespace of its own, where /run is an empty tmpfs and
#     /var/lib is read-only (the cache then stays in memory). The namespace
#     goes with the last process in it (a container's conmon, for one).
# Each call has a /run of its own: state that several calls share (podman's
# --tmpdir, runc's --root) must be in DIR.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 DIR COMMAND [ARGS...]" >&2
  exit 2
fi
dir=$(realpath "$1")
shift
case $dir/ in
  /run/* | /var/lib/*)
    echo "contained.sh: $dir would be hidden from the command (its /run is its own, its /var/lib read-only): use a directory under TMPDIR" >&2
    exit 2
    ;;
esac
mkdir -p "$dir/networks"
cat >"$dir/containers.conf" <<EOF
# written by scripts/contained.sh
[engine]
lock_type = "file"

[network]
network_config_dir = "$dir/networks"
EOF
export CONTAINERS_CONF="$dir/containers.conf"
# shellcheck disable=SC2016 # expanded by the inner shell
exec unshare --mount --propagation private -- bash -c '
  mount -t tmpfs -o mode=0755 tmpfs /run &&
    mount --bind /var/lib /var/lib && mount -o remount,bind,ro /var/lib &&
    exec "$@"' contained.sh "$@"
