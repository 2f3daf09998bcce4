#!/usr/bin/env bash
# run.sh [options] -k NAME -c 'shell command'
# run.sh [options] -k NAME -- program args...
#
# Boots kernel NAME (from kernels.txt) under QEMU and runs the command in
# the guest as root, in the current directory, with the host's file system
# visible read-only at the same paths. Exits with the command's exit code.
#
# Options:
#   -k NAME        kernel (as in kernels.txt)
#   -c CMD         shell command (bash) to run
#   -e VAR=VALUE   set VAR in the guest (repeatable); CI, GOFLAGS and
#                  NETFLOWTCPEND_BINARY pass through from the host anyway
#   -o DIR         writable directory shared with the guest at the same path
#                  (the guest sees it as $VM_OUT); default: a new directory
#                  under .tools/vm/runs, removed after a successful run
#   -t SECONDS     give up after this long (default 1800) and fail
#   -q             do not stream the guest's console; it is kept in
#                  DIR/console.log and printed if the guest fails
#
# Environment: VM_ACCEL=auto|kvm|tcg (default auto: KVM if it can boot
# these kernels here, else TCG), VM_MEM (MiB, default 3072), VM_CPUS
# (default 2), VM_KVM_BOOT_TIMEOUT (seconds KVM gets to reach init, default
# 20, before TCG takes over), VM_APPEND (more kernel parameters, e.g.
# "earlyprintk=serial loglevel=8" to see an early hang), VM_QEMU_ARGS (more
# QEMU arguments), VM_KVM_CPU / VM_TCG_CPU (-cpu, default host / max).
#
# Exit codes: the command's, or 125 when the guest did not report one (did
# not boot, crashed, hung: the console log is printed).
#
# The guest writes DIR/boot-seconds (guest uptime when the command started),
# DIR/end-seconds and DIR/exit-code; run.sh writes DIR/accel.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
vm="$repo/.tools/vm"

name='' cmd='' out='' timeout=1800 quiet=false
extra_env=()
while getopts 'k:c:e:o:t:qh' opt; do
  case $opt in
    k) name=$OPTARG ;;
    c) cmd=$OPTARG ;;
    e) extra_env+=("$OPTARG") ;;
    o) out=$OPTARG ;;
    t) timeout=$OPTARG ;;
    q) quiet=true ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ -n "$name" ] || { echo "run.sh: which kernel? -k NAME (see test/vm/kernels.txt)" >&2; exit 2; }
if [ $# -gt 0 ]; then
  [ -z "$cmd" ] || { echo "run.sh: -c or a program, not both" >&2; exit 2; }
  cmd=$(printf '%q ' "$@")
fi
[ -n "$cmd" ] || { echo "run.sh: nothing to run (-c CMD or -- program args)" >&2; exit 2; }

"$repo/scripts/ensure-packages.sh" qemu-system-x86
kdir=$("$here/fetch-kernel.sh" "$name")
VMLINUX=''
# shellcheck source=/dev/null
. "$kdir/kernel.env"
initrd=$("$here/mkinitramfs.sh" "$name")

keep_out=true
if [ -z "$out" ]; then
  mkdir -p "$vm/runs"
  out=$(mktemp -d "$vm/runs/$name.XXXXXX")
  keep_out=false
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
case $out in *[[:space:]]*) echo "run.sh: the shared directory's path must not contain spaces: $out" >&2; exit 2 ;; esac

# What the guest needs at its own path besides the host's root, which it
# sees read-only: the guest mounts tmpfs of its own on /tmp and /run, which
# would hide a checkout (or module cache) there, so its init shares these
# back (vm_keep=, on the kernel command line: no spaces, no colons).
keep=""
for p in "$PWD" "$repo" "$(command -v go >/dev/null && go env GOMODCACHE)"; do
  [ -n "$p" ] || continue
  case $p in
    *[[:space:]:]*) echo "run.sh: the guest cannot be given $p: its path holds a space or a colon; use a checkout whose path has neither" >&2; exit 2 ;;
  esac
  keep="$keep${keep:+:}$p"
done
rm -f "$out/exit-code" "$out/boot-seconds" "$out/end-seconds" "$out/console.log"

# The guest's script: the environment of a root shell with writable
# scratch in tmpfs (HOME, Go's caches), then the command, in the caller's
# directory. CI=true stays set so privileged tests fail instead of skipping.
{
  echo "# written by test/vm/run.sh"
  # The caller's PATH (Go, tools), with the sbin directories root has
  # (dnsmasq is in /usr/sbin).
  printf 'export PATH=%q\n' "$PATH:/usr/local/sbin:/usr/sbin:/sbin"
  echo "export HOME=/tmp TMPDIR=/tmp GOCACHE=/tmp/go-build XDG_CACHE_HOME=/tmp/.cache TERM=dumb LANG=C.UTF-8"
  printf 'export VM_OUT=%q VM_KERNEL=%q\n' "$out" "$name"
  # How the guest runs (kvm or tcg), known only once boot() has chosen:
  # read at run time from the shared run directory. Tests that repeat
  # slow work for its own sake (testenv.Emulated) repeat less under TCG.
  printf 'VM_ACCEL=$(cat %q 2>/dev/null); export VM_ACCEL\n' "$out/accel"
  # Go's module cache is read from the host (read-only): no downloads.
  if command -v go >/dev/null; then
    printf 'export GOMODCACHE=%q GOFLAGS=%q GOPROXY=off GOTOOLCHAIN=local\n' "$(go env GOMODCACHE)" "${GOFLAGS:-}"
  fi
  for v in CI NETFLOWTCPEND_BINARY; do
    [ -n "${!v:-}" ] && printf 'export %s=%q\n' "$v" "${!v}"
  done
  for kv in "${extra_env[@]}"; do printf 'export %q\n' "$kv"; done
  printf 'cd %q || { echo "vm: the guest does not see %s (test/vm/init shares paths under /tmp and /run back from vm_keep)" >&2; exit 126; }\n' "$PWD" "$PWD"
  printf '%s\n' "$cmd"
} >"$out/cmd"

mem=${VM_MEM:-3072}
cpus=${VM_CPUS:-2}
# The host's root read-only, the run directory writable (same path in the
# guest). multidevs=remap: the host's / spans several file systems, whose
# inode numbers would otherwise collide in the guest.
qemu_args=(
  -nodefaults -no-user-config -display none -no-reboot
  -m "$mem" -smp "$cpus"
  -kernel "${VMLINUX:-$VMLINUZ}" -initrd "$initrd"
  -append "console=ttyS0 quiet loglevel=4 panic=-1 vm_out=$out vm_keep=$keep ${VM_APPEND:-}"
  -chardev "stdio,id=con,signal=off" -serial chardev:con
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
  -virtfs "local,path=$out,mount_tag=vmout,security_model=none,multidevs=remap"
  -device virtio-rng-pci
  -nic none
)
# shellcheck disable=SC2206 # word splitting intended
qemu_args+=(${VM_QEMU_ARGS:-})

# KVM: this machine's /dev/kvm may be kvm_pvm (a KVM that runs only guests
# built for PVM, not stock kernels), where a stock kernel hangs after the
# bootloader; so KVM must prove itself by reaching init quickly, and TCG
# takes over otherwise.
kvm_usable() {
  [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  if [ -d /sys/module/kvm_pvm ] && ! [ -d /sys/module/kvm_intel ] && ! [ -d /sys/module/kvm_amd ]; then
    echo "run.sh: /dev/kvm is kvm_pvm here (no kvm_intel/kvm_amd): it cannot run stock kernels; using TCG" >&2
    return 1
  fi
}

# boot ACCEL LIMIT: runs QEMU; console to $out/console.log (and to stdout
# unless -q). Returns QEMU's status, 124 on timeout.
boot() {
  local accel=$1 limit=$2 cpu
  case $accel in
    kvm) cpu=${VM_KVM_CPU:-host} ;;
    # TCG: "max" gives the guest RDRAND (entropy) and the newest
    # instructions TCG emulates.
    tcg) cpu=${VM_TCG_CPU:-max} ;;
  esac
  local accel_opt=$accel
  [ "$accel" = tcg ] && accel_opt=tcg,thread=multi,tb-size=256
  echo "$accel" >"$out/accel"
  local status=0
  if $quiet; then
    timeout --foreground -k 5 "$limit" qemu-system-x86_64 -accel "$accel_opt" -cpu "$cpu" "${qemu_args[@]}" \
      </dev/null 2>&1 | tr -d '\r' >"$out/console.log" || status=${PIPESTATUS[0]}
  else
    timeout --foreground -k 5 "$limit" qemu-system-x86_64 -accel "$accel_opt" -cpu "$cpu" "${qemu_args[@]}" \
      </dev/null 2>&1 | tr -d '\r' | tee "$out/console.log" || status=${PIPESTATUS[0]}
  fi
  return "$status"
}

print_console() {
  local lines
  lines=$(wc -l <"$out/console.log" 2>/dev/null || echo 0)
  echo "---- guest console ($name, $(cat "$out/accel" 2>/dev/null), $out/console.log, last 300 of $lines lines) ----" >&2
  tail -n 300 "$out/console.log" >&2 || true
  echo "---- end of guest console ----" >&2
}

start=$(date +%s.%N)
accel=${VM_ACCEL:-auto}
status=0
case $accel in
  tcg) boot tcg "$timeout" || status=$? ;;
  kvm) boot kvm "$timeout" || status=$? ;;
  auto)
    if kvm_usable; then
      # A short first try: if init has not started the command by then,
      # KVM does not boot this kernel here.
      kvm_limit=${VM_KVM_BOOT_TIMEOUT:-20}
      (
        boot kvm "$timeout"
      ) &
      kvm_pid=$!
      for _ in $(seq $((kvm_limit * 10))); do
        [ -e "$out/boot-seconds" ] || ! kill -0 "$kvm_pid" 2>/dev/null && break
        sleep 0.1
      done
      if [ -e "$out/boot-seconds" ]; then
        wait "$kvm_pid" || status=$?
      else
        echo "run.sh: KVM did not reach init within ${kvm_limit}s; using TCG" >&2
        pkill -P "$kvm_pid" >/dev/null 2>&1 || true
        wait "$kvm_pid" 2>/dev/null || true
        mv "$out/console.log" "$out/console-kvm.log" 2>/dev/null || true
        boot tcg "$timeout" || status=$?
      fi
    else
      boot tcg "$timeout" || status=$?
    fi
    ;;
  *) echo "run.sh: VM_ACCEL must be auto, kvm or tcg" >&2; exit 2 ;;
esac
end=$(date +%s.%N)
echo "$start $end" >"$out/host-seconds"

if [ ! -s "$out/exit-code" ]; then
  if [ "$status" -eq 124 ]; then
    echo "run.sh: FAIL: the $name guest did not finish within ${timeout}s" >&2
  else
    echo "run.sh: FAIL: the $name guest stopped without reporting an exit code (QEMU status $status): it did not boot or crashed" >&2
  fi
  $quiet && print_console
  exit 125
fi
rc=$(cat "$out/exit-code")
$keep_out || [ "$rc" -ne 0 ] || rm -rf "$out"
exit "$rc"
