#!/usr/bin/env bash
# test-kernels.sh: the kernel-dependent tests on every kernel of KERNELS,
# as one table (make test-kernels).
#
#   KERNELS       names from kernels.txt, and "host" for this machine's own
#                 kernel (default: all of kernels.txt, then host)
#   VM_PACKAGES   the packages to test (default: the ones whose tests load
#                 BPF programs or depend on the kernel)
#   VM_JOBS       guests booted at a time (default 1; .ci/run: 2)
#   VM_TIMEOUT    seconds one guest may take in all (default 1500; 2700
#                 with VM_JOBS above 1)
#   VM_TEST_TIMEOUT  go test -timeout for one package (default 20m; 35m
#                 with VM_JOBS above 1)
#   VM_TEST_SKIP  go test -skip pattern (default '^TestImage|^TestMetrics|^TestPrometheus|^TestK8s':
#                 the image tests need the image that make test builds;
#                 these and the metrics tests test no kernel feature (the
#                 metrics count the records the other tests check on each
#                 kernel) and took 3.5 minutes in a 6.1 guest under TCG;
#                 the Kubernetes names come from an API server, the same
#                 on every kernel)
#   VM_TEST_RUN   go test -run pattern (default: every test), and
#   VM_TEST_COUNT go test -count (default 1): to run one flaky test many
#                 times where it failed, say
#   VM_ACCEL, VM_MEM, VM_CPUS: see run.sh
#
# The test binaries are compiled here, on the host (go test -c), and run in
# each guest by run-tests.sh as root with CI=true: a test that cannot get
# the privileges it needs fails instead of skipping. The e2e test runs the
# collector built by make build (NETFLOWTCPEND_BINARY).
#
# "host" is not booted: this machine's kernel image is not available to boot
# (no /boot/vmlinuz-$(uname -r), no modules; here it is a Firecracker guest
# kernel), so its row is the same binaries run directly on the host.
#
# Results stay in .tools/vm/results/KERNEL/ (console.log, NAME.out with each
# package's full output). Exits 1 if any test failed or a guest did not boot.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
vm="$repo/.tools/vm"
cd "$repo"

all_kernels=$(grep -v '^\s*#' "$here/kernels.txt" | awk 'NF {print $1}' | xargs)
KERNELS=${KERNELS:-"$all_kernels host"}
VM_PACKAGES=${VM_PACKAGES:-"./bpf ./receiver ./internal/sockscan . ./test/e2e"}
VM_JOBS=${VM_JOBS:-1}
# Guests that share the CPUs take longer each.
if [ "$VM_JOBS" -gt 1 ]; then
  VM_TIMEOUT=${VM_TIMEOUT:-2700}
  export VM_TEST_TIMEOUT=${VM_TEST_TIMEOUT:-35m}
else
  VM_TIMEOUT=${VM_TIMEOUT:-1500}
  export VM_TEST_TIMEOUT=${VM_TEST_TIMEOUT:-20m}
fi
export VM_TEST_SKIP=${VM_TEST_SKIP-^TestImage|^TestMetrics|^TestPrometheus|^TestK8s}
export VM_TEST_RUN=${VM_TEST_RUN:-} VM_TEST_COUNT=${VM_TEST_COUNT:-1}
export CI=true
export NETFLOWTCPEND_BINARY="$repo/dist/otelcol-netflowtcpend"
[ -x "$NETFLOWTCPEND_BINARY" ] || { echo "test-kernels: no $NETFLOWTCPEND_BINARY: run make build" >&2; exit 1; }

for k in $KERNELS; do
  [ "$k" = host ] || grep -v '^\s*#' "$here/kernels.txt" | awk '{print $1}' | grep -qxF "$k" ||
    { echo "test-kernels: unknown kernel '$k' (kernels.txt has: $all_kernels; and host)" >&2; exit 2; }
done

# qemu and busybox for the guests; what the tests run, which the guests
# take from the host: dnsmasq (DNS tests), iptables and ip (NAT tests),
# openssl and curl (TLS tests), as make test installs them.
"$repo/scripts/ensure-packages.sh" qemu-system-x86 busybox-static cpio dnsmasq-base iptables iproute2 openssl curl

# Kernels and initramfs first, so that a download problem shows as one.
for k in $KERNELS; do
  [ "$k" = host ] && continue
  "$here/mkinitramfs.sh" "$k" >/dev/null
done

# Test binaries, one per package, named after the last element of the
# import path (go test -c with several packages does that); run-tests.sh
# gets NAME=DIR pairs, vmtable NAME=LABEL pairs.
bindir="$vm/tests"
rm -rf "$bindir" && mkdir -p "$bindir"
echo "test-kernels: compiling test binaries for $VM_PACKAGES"
# Packages under ./test/ are in the test module (test/go.mod): each is
# compiled in its own module's directory.
pkgdir() { case $1 in ./test/*) echo "test ./${1#./test/}" ;; *) echo ". $1" ;; esac; }
pairs=() columns=()
for p in $VM_PACKAGES; do
  read -r mod rel < <(pkgdir "$p")
  read -r ip dir < <(go -C "$mod" list -f '{{.ImportPath}} {{.Dir}}' "$rel")
  name=${ip##*/}
  go -C "$mod" test -c -o "$bindir/$name.test" "$rel"
  [ -x "$bindir/$name.test" ] || { echo "test-kernels: $p has no tests" >&2; exit 1; }
  label=${p#./}
  pairs+=("$name=$dir")
  columns+=("$name=$label")
done

results="$vm/results"
rm -rf "$results" && mkdir -p "$results"
# run_kernel K: K's row (a guest, or this machine for "host"); its status
# goes to results/K/guest-status.
run_kernel() {
  local k=$1 out="$results/$1" status=0
  mkdir -p "$out"
  if [ "$k" = host ]; then
    echo "test-kernels: host ($(uname -r)): running the tests on this machine"
    echo host >"$out/accel"
    local start
    start=$(date +%s.%N)
    "$here/run-tests.sh" "$out" "$bindir" "${pairs[@]}" || status=$?
    echo "$start $(date +%s.%N)" >"$out/host-seconds"
  else
    echo "test-kernels: $k: booting"
    "$here/run.sh" -q -k "$k" -o "$out" -t "$VM_TIMEOUT" \
      -e VM_TEST_TIMEOUT="$VM_TEST_TIMEOUT" -e VM_TEST_SKIP="$VM_TEST_SKIP" \
      -e VM_TEST_RUN="$VM_TEST_RUN" -e VM_TEST_COUNT="$VM_TEST_COUNT" -- \
      "$here/run-tests.sh" "$out" "$bindir" "${pairs[@]}" || status=$?
  fi
  echo "$status" >"$out/guest-status"
  echo "test-kernels: $k: exit $status"
}

# Guests VM_JOBS at a time (the host's row runs alone, after them: its
# tests measure time): a guest under TCG keeps about 1.4 of 2 CPUs busy,
# most tests waiting on one verifier or one connection at a time.
guests=() host=false
for k in $KERNELS; do
  if [ "$k" = host ]; then host=true; else guests+=("$k"); fi
done
running=0
for k in "${guests[@]}"; do
  if [ "$VM_JOBS" -gt 1 ]; then
    run_kernel "$k" &
    running=$((running + 1))
    if [ "$running" -ge "$VM_JOBS" ]; then wait -n || true; running=$((running - 1)); fi
  else
    run_kernel "$k"
  fi
done
wait
$host && run_kernel host

failed=false
for k in $KERNELS; do
  out="$results/$k"
  [ "$(cat "$out/guest-status" 2>/dev/null)" = 0 ] || failed=true
  for pair in "${pairs[@]}"; do
    name=${pair%%=*}
    [ -e "$out/$name.out" ] || continue
    go tool test2json -p "$name" <"$out/$name.out" >"$out/$name.json" || true
  done
done

echo
go -C test run ./vm/vmtable -results "$results" -kernels "$KERNELS" -packages "${columns[*]}"
$failed && exit 1
exit 0
