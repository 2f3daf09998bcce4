#!/usr/bin/env bash
# build-image.sh BINARY ARCHIVE REFERENCE: builds the collector's OCI image
# with buildah (Debian's package; no registry is contacted: the base is
# `scratch`) and writes it as an OCI archive.
#
# The image holds the static collector binary with the file capabilities
# cap_bpf,cap_net_admin,cap_perfmon=ep, runs as 65534:65534 by default, and
# carries the OCI labels. Everything in it is dated SOURCE_DATE_EPOCH (the
# last commit's time unless set), so the same binary gives the same image.
#
# Rootful only: setcap inside a user namespace (rootless buildah) writes
# namespaced (v3) capabilities, which no Kubernetes node would honor.
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 BINARY ARCHIVE REFERENCE" >&2
  exit 2
fi
binary=$1 archive=$2 reference=$3
root=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "make image needs root: it sets file capabilities on the binary (setcap), which only root" >&2
  echo "outside a user namespace can write in the form a Kubernetes node honors" >&2
  exit 1
fi
file "$binary" | grep -q "statically linked" || {
  echo "$binary is not statically linked: $(file -b "$binary")" >&2
  exit 1
}

: "${SOURCE_DATE_EPOCH:=$(git -C "$root" log -1 --format=%ct)}"
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
revision=$(git -C "$root" rev-parse HEAD)
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
  revision="$revision-dirty"
fi
version=${reference##*:}
description=$(awk -F': ' '/^  description:/ {print $2; exit}' "$root/builder-config.yaml")
# The repository declares no LICENSE file; the kernel programs declare
# "Dual MIT/GPL" (bpf/netflow.c), i.e. MIT or GPL-2.0-only. Override with
# IMAGE_LICENSES when that changes.
licenses=${IMAGE_LICENSES:-MIT OR GPL-2.0-only}
source=${IMAGE_SOURCE:-https://github.com/netflowtcpend/netflowtcpend}
arch=$(go env GOARCH)

# A private, throwaway container storage: nothing lands in the machine's
# podman/buildah storage, and vfs works on any filesystem (overlay does not
# nest in an overlay-backed work tree).
storage=$(mktemp -d "${TMPDIR:-/tmp}/netflowtcpend-image.XXXXXX")
b=(buildah --root "$storage/root" --runroot "$storage/run" --storage-driver vfs)
ctr=""
cleanup() {
  if [ -n "$ctr" ]; then "${b[@]}" rm "$ctr" >/dev/null 2>&1 || true; fi
  "${b[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$storage"
}
trap cleanup EXIT

ctr=$("${b[@]}" from --pull=never scratch)
mnt=$("${b[@]}" mount "$ctr")
install -d -m 0755 "$mnt/etc/otelcol-netflowtcpend" "$mnt/etc/ssl/certs"
install -m 0755 "$binary" "$mnt/otelcol-netflowtcpend"
# Without these the process of a non-root user has no capabilities after
# exec: Kubernetes puts securityContext.capabilities.add in the bounding,
# permitted and effective sets but not the ambient set, and exec drops the
# rest. Under no_new_privs (allowPrivilegeEscalation: false) exec still
# honors file capabilities that the process already holds in its permitted
# set, which is where the runtime put them (see docs/kubernetes.md).
setcap cap_bpf,cap_net_admin,cap_perfmon=ep "$mnt/otelcol-netflowtcpend"
getcap "$mnt/otelcol-netflowtcpend" | grep -q "cap_net_admin,cap_perfmon,cap_bpf=ep" || {
  echo "setcap did not take: $(getcap "$mnt/otelcol-netflowtcpend")" >&2
  exit 1
}
# The default configuration: `make run`'s, every record printed.
install -m 0644 "$root/examples/debug.yaml" "$mnt/etc/otelcol-netflowtcpend/config.yaml"
# Root certificates (Debian's ca-certificates) for OTLP exporters over TLS.
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
"${b[@]}" umount "$ctr" >/dev/null

"${b[@]}" config \
  --os linux --arch "$arch" \
  --user 65534:65534 \
  --workingdir / \
  --entrypoint '["/otelcol-netflowtcpend"]' \
  --cmd '["--config=/etc/otelcol-netflowtcpend/config.yaml"]' \
  --created-by "scripts/build-image.sh (buildah $(buildah --version | awk '{print $3}'))" \
  --label "org.opencontainers.image.title=otelcol-netflowtcpend" \
  --label "org.opencontainers.image.description=$description" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.source=$source" \
  --label "org.opencontainers.image.licenses=$licenses" \
  --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.created=$created" \
  "$ctr"

mkdir -p "$(dirname "$archive")"
rm -f "$archive"
"${b[@]}" commit --quiet --format oci --identity-label=false --timestamp "$SOURCE_DATE_EPOCH" \
  "$ctr" "oci-archive:$storage/image.tar:$reference" >/dev/null
# The image (manifest, config, layer) is already the same from build to
# build; repack the archive around it so that the file is too.
mkdir "$storage/layout"
tar -xf "$storage/image.tar" -C "$storage/layout"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  --format=gnu -cf "$archive" -C "$storage/layout" .
echo "wrote $archive ($reference, revision $revision, created $created)"
