#!/usr/bin/env bash
# fetch-kernel.sh NAME: downloads the kernel package pinned for NAME in
# kernels.txt and unpacks it under .tools/vm/kernels/NAME; prints that
# directory. fetch-kernel.sh --list: what the archive serves now, to pick new
# pins from.
#
# The packages come from suites other than the machine's own (bullseye,
# trixie), so apt runs with a sources file, package lists and cache of its own
# under .tools/vm/apt: the machine's sources and its installed packages are
# never touched, and nothing goes to /boot. apt checks the package against
# the signed index, as for any install; dpkg-deb -x only unpacks it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
vm="$repo/.tools/vm"
apt_dir="$vm/apt"
kernels_txt="$here/kernels.txt"
KEYRING=${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

die() { echo "fetch-kernel: $*" >&2; exit 1; }
log() { echo "fetch-kernel: $*" >&2; }

# machine_mirror PATH prints the first archive URI of this machine's own apt
# sources whose path ends in PATH (/debian, /debian-security), in either
# format (deb822 .sources or one-line .list): the mirror this machine is
# configured for, which is the one it can reach.
machine_mirror() {
  local path=$1
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -n -e 's/^URIs:\s*//p' -e 's/^deb\s\+\(\[[^]]*\]\s\+\)\?//p' |
    tr ' ' '\n' | grep -E "^https?://[^ ]*${path}/?\$" | head -n1 | sed 's:/$::'
  return 0
}
# DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR override them.
DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(machine_mirror /debian)}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(machine_mirror /debian-security)}
[ -n "$DEBIAN_MIRROR" ] || die "no Debian archive in this machine's apt sources (a URI ending in /debian); set DEBIAN_MIRROR to one"
[ -n "$DEBIAN_SECURITY_MIRROR" ] || DEBIAN_SECURITY_MIRROR="${DEBIAN_MIRROR%/debian}/debian-security"

# Everything apt reads or writes is under $apt_dir. The machine's apt.conf.d
# still applies (proxies), but not its sources (SourceParts is an empty
# directory) nor its dpkg status.
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list"
  -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Dir::State::Status=/dev/null"
  -o "Acquire::Languages=none"
  # Whole indexes: many small pdiff downloads are slower than one file.
  -o "Acquire::PDiffs=false"
  -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
  -o "APT::Architecture=amd64" -o "APT::Architectures=amd64"
  # The download goes into .tools/vm, which the _apt user may not be able to
  # write to.
  -o "APT::Sandbox::User=root"
)

# The suites named in kernels.txt, each with its security pocket (for
# --list and for pins taken from it).
write_sources() {
  mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  local suites s
  suites=$(grep -v '^\s*#' "$kernels_txt" | awk 'NF {print $2}' | sed 's/-security$//' | sort -u)
  {
    for s in $suites; do
      echo "deb [signed-by=$KEYRING] $DEBIAN_MIRROR $s main"
      echo "deb [signed-by=$KEYRING] $DEBIAN_SECURITY_MIRROR $s-security main"
    done
  } >"$apt_dir/sources.list.new"
  if ! cmp -s "$apt_dir/sources.list.new" "$apt_dir/sources.list"; then
    mv "$apt_dir/sources.list.new" "$apt_dir/sources.list"
    rm -f "$apt_dir/updated"
  else
    rm -f "$apt_dir/sources.list.new"
  fi
}

apt_update() {
  log "updating the package lists of $(awk '{print $4}' "$apt_dir/sources.list" | sort -u | xargs) (in $apt_dir)"
  apt-get "${apt_opts[@]}" -qq update >&2 || die "apt-get update failed (is $DEBIAN_MIRROR reachable?)"
  # (not in lists/: apt-get update deletes files it does not know there)
  touch "$apt_dir/updated"
}

# served PACKAGE: the versions of PACKAGE in the lists, one a line.
served() { apt-cache "${apt_opts[@]}" madison "$1" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}'; }

list_available() {
  local name suite pkg version series
  while read -r name suite pkg version; do
    series=${name%%[^0-9.]*}
    echo "# $name (pinned $pkg $version); served now:"
    # One apt-cache call for all: each call reads every list again.
    # shellcheck disable=SC2046
    apt-cache "${apt_opts[@]}" madison $(apt-cache "${apt_opts[@]}" pkgnames "linux-image-$series." |
      grep -E -- '-amd64-unsigned$' | grep -v -e '-rt-' -e '-cloud-' | sort -V)
  done < <(grep -v '^\s*#' "$kernels_txt" | awk 'NF')
}

command -v apt-get >/dev/null || die "needs apt-get (Debian/Ubuntu)"
[ -r "$KEYRING" ] || die "no $KEYRING: install debian-archive-keyring"
# One at a time: guests booted side by side (VM_JOBS) each call this, and
# two writers of the sources file, the lists or one kernel's directory
# fail each other (mv: cannot stat sources.list.new).
mkdir -p "$apt_dir"
exec 9>"$apt_dir/lock"
flock 9
write_sources
[ -e "$apt_dir/updated" ] || apt_update

if [ "${1:-}" = --list ]; then
  apt_update
  list_available
  exit 0
fi

name=${1:?usage: fetch-kernel.sh NAME (a name from kernels.txt) | --list}
line=$(grep -v '^\s*#' "$kernels_txt" | awk -v n="$name" '$1 == n' | head -1)
[ -n "$line" ] || die "no kernel named '$name' in $kernels_txt (there are: $(grep -v '^\s*#' "$kernels_txt" | awk 'NF {print $1}' | xargs))"
read -r _ suite pkg version <<<"$line"

dest="$vm/kernels/$name"
# The unpacked kernel is reused while kernels.txt and the layout (FORMAT)
# stay the same.
stamp="$pkg=$version"
format=2
if [ -e "$dest/kernel.env" ] && grep -qxF "PKG='$stamp'" "$dest/kernel.env" && grep -qx "FORMAT=$format" "$dest/kernel.env"; then
  echo "$dest"
  exit 0
fi

# The lists may be older than the pin: refresh once before giving up.
if ! served "$pkg" | grep -qxF "$version"; then
  apt_update
fi
if ! served "$pkg" | grep -qxF "$version"; then
  {
    echo "fetch-kernel: the Debian archive ($DEBIAN_MIRROR, suite $suite) no longer serves $pkg version $version,"
    echo "  which $kernels_txt pins for '$name'."
    now=$(served "$pkg" | xargs)
    echo "  versions of $pkg served now: ${now:-none}"
    echo "  pick a kernel from 'test/vm/fetch-kernel.sh --list' and update kernels.txt."
  } >&2
  exit 1
fi

debs="$vm/debs"
mkdir -p "$debs"
deb=$(ls "$debs/${pkg}_${version//:/%3a}_"*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  log "downloading $pkg=$version from $suite"
  (cd "$debs" && apt-get "${apt_opts[@]}" -qq download "$pkg=$version" >&2) || die "apt-get download $pkg=$version failed"
  deb=$(ls "$debs/${pkg}_${version//:/%3a}_"*.deb | head -1)
fi

log "unpacking $(basename "$deb")"
rm -rf "$dest.tmp" "$dest"
mkdir -p "$dest.tmp"
dpkg-deb -x "$deb" "$dest.tmp"
vmlinuz=$(ls "$dest.tmp"/boot/vmlinuz-* 2>/dev/null | head -1 || true)
# bookworm and older: /lib/modules; trixie (merged /usr): /usr/lib/modules.
moddir=$(ls -d "$dest.tmp"/lib/modules/* "$dest.tmp"/usr/lib/modules/* 2>/dev/null | head -1 || true)
[ -f "$vmlinuz" ] && [ -d "$moddir" ] || die "$deb has no /boot/vmlinuz-* or modules directory"
grep -q '^CONFIG_DEBUG_INFO_BTF=y' "$dest.tmp"/boot/config-* || log "warning: $pkg is built without BTF"

# The uncompressed kernel, for QEMU's PVH boot (straight into the kernel,
# CONFIG_PVH): it skips the bzImage's decompressor, which takes seconds of
# every boot under TCG. Debian compresses with xz (5.10, 6.1) or zstd (6.12);
# the compressed kernel starts at the first magic number that decompresses
# to an ELF file. Without one, run.sh boots the bzImage.
vmlinux=''
for magic in xz zstd; do
  case $magic in
    xz) pattern=$'\xfd7zXZ' decompress=(xz -dcq --single-stream) ;;
    zstd) pattern=$'\x28\xb5\x2f\xfd' decompress=(zstd -dcq) ;;
  esac
  command -v "${decompress[0]}" >/dev/null || continue
  for off in $(LC_ALL=C grep -abo "$pattern" "$vmlinuz" | cut -d: -f1 | head -5); do
    tail -c +$((off + 1)) "$vmlinuz" | "${decompress[@]}" >"$dest.tmp/vmlinux" 2>/dev/null || true
    if [ "$(head -c 4 "$dest.tmp/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then
      vmlinux="$dest/vmlinux"
      break 2
    fi
  done
done
[ -n "$vmlinux" ] || { rm -f "$dest.tmp/vmlinux"; log "no uncompressed kernel in $(basename "$vmlinuz"); booting the bzImage"; }

mv "$dest.tmp" "$dest"
cat >"$dest/kernel.env" <<EOF
PKG='$stamp'
FORMAT=$format
KVER='$(basename "$moddir")'
VMLINUZ='${vmlinuz/$dest.tmp/$dest}'
VMLINUX='$vmlinux'
MODDIR='${moddir/$dest.tmp/$dest}'
CONFIG='$(ls "$dest"/boot/config-* | head -1)'
EOF
echo "$dest"
