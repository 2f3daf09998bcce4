#!/usr/bin/env bash
# mkinitramfs.sh NAME: builds the guest's initramfs for kernel NAME (already
# unpacked by fetch-kernel.sh) and prints its path:
# .tools/vm/initramfs/NAME.cpio.gz. Rebuilt only when its inputs change.
#
# It holds busybox-static, our /init (test/vm/init) and the kernel's own
# modules that the guest needs, decompressed (busybox insmod cannot read
# trixie's .ko.xz) and listed in load order in /modules/order. Debian's
# package has no modules.dep (depmod makes it at install time), so the
# dependencies are read from each module's .modinfo section.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
vm="$repo/.tools/vm"

# What the guest loads, if the kernel has it as a module (built-in ones need
# nothing; missing ones are reported). Dependencies are added.
#   virtio_pci, 9pnet_virtio, 9p: the host's file system (9p over virtio)
#   virtio_rng: entropy, or getrandom() can block for minutes early on 5.10
#   inet_diag, tcp_diag, udp_diag, raw_diag, mptcp_diag: sock_diag, which
#     the receiver's start-time scan of open sockets uses
#   veth: the tests' network namespace pairs
#   sch_ingress, cls_bpf: TC, for BPF tools run with make vm
#   crc32c_generic ... nf_conntrack_netlink: the NAT tests' iptables and
#     ip6tables (iptables-nft: nf_tables, a counter in every rule, xtables
#     targets through nft_compat) and nat.conntrack's lookups, which the kernel cannot load
#     on demand (its modprobe helper does not see the chroot);
#     crc32c_generic is the algorithm libcrc32c asks the crypto API for as
#     it loads, a soft dependency that the dependency walk below misses
MODULES=${VM_MODULES:-"virtio_pci virtio_rng 9pnet_virtio 9p inet_diag tcp_diag udp_diag raw_diag mptcp_diag veth sch_ingress cls_bpf crc32c_generic nf_tables nft_counter nft_chain_nat nft_compat nft_nat nft_masq xt_nat xt_MASQUERADE xt_tcpudp nf_conntrack_netlink"}

name=${1:?usage: mkinitramfs.sh NAME}
kdir=$("$here/fetch-kernel.sh" "$name")
# shellcheck source=/dev/null
. "$kdir/kernel.env"

# busybox-static: the initramfs has no libc.
"$repo/scripts/ensure-packages.sh" busybox-static cpio >&2 # stdout is the path
busybox=/bin/busybox

out="$vm/initramfs/$name.cpio.gz"
key=$(cat "$here/init" "$0" "$kdir/kernel.env" "$busybox" | sha256sum | cut -c1-16)-$(echo "$MODULES" | sha256sum | cut -c1-8)
if [ -e "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then
  echo "$out"
  exit 0
fi

# name -> file, with the kernel's normalisation of - to _.
declare -A file_of=()
while read -r f; do
  b=$(basename "$f"); b=${b%%.ko*}; file_of[${b//-/_}]=$f
done < <(find "$MODDIR/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')

# modinfo_field FILE FIELD: a field of a module's .modinfo section.
modinfo_field() {
  local f=$1 field=$2
  case $f in
    *.xz) xz -dc "$f" ;;
    *.zst) zstd -qdc "$f" ;;
    *.gz) gzip -dc "$f" ;;
    *) cat "$f" ;;
  esac | tr '\0' '\n' | grep -a -m1 "^$field=" | cut -d= -f2- || true
}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,mnt,tmp,modules}
cp "$busybox" "$stage/bin/busybox"
cp "$here/init" "$stage/init"
chmod 755 "$stage/init"
# The kernel opens /dev/console for init before init can mount devtmpfs.
if [ "$(id -u)" -eq 0 ]; then mknod -m 600 "$stage/dev/console" c 5 1; fi

declare -A done_=()
order=()
# add NAME: its dependencies first, then itself (depth first).
add() {
  local m=${1//-/_} d
  [ -n "${done_[$m]:-}" ] && return
  done_[$m]=1
  local f=${file_of[$m]:-}
  if [ -z "$f" ]; then
    if grep -q "/${m//_/[-_]}\.ko" "$MODDIR/modules.builtin"; then return; fi
    echo "mkinitramfs: $name ($KVER) has no module $m (not built in either); the guest goes without it" >&2
    return
  fi
  local deps
  deps=$(modinfo_field "$f" depends)
  for d in ${deps//,/ }; do add "$d"; done
  order+=("$m")
  case $f in
    *.xz) xz -dc "$f" ;;
    *.zst) zstd -qdc "$f" ;;
    *.gz) gzip -dc "$f" ;;
    *) cat "$f" ;;
  esac >"$stage/modules/$m.ko"
}
for m in $MODULES; do add "$m"; done
printf '%s\n' "${order[@]}" >"$stage/modules/order"

mkdir -p "$(dirname "$out")"
(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1) >"$out.tmp"
mv "$out.tmp" "$out"
echo "$key" >"$out.key"
echo "mkinitramfs: $name: $(basename "$out") with modules: ${order[*]}" >&2
echo "$out"
