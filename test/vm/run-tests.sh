#!/usr/bin/env bash
# run-tests.sh OUT BINDIR NAME=DIR...: runs compiled test binaries (made by
# test-kernels.sh as BINDIR/NAME.test) one package at a time, each in its
# package directory DIR as go test would, and leaves in OUT for each package:
#   <name>.out      the -test.v=test2json output (go tool test2json reads it)
#   <name>.rc       the binary's exit code
#   <name>.seconds  how long it ran
# plus OUT/uname. Runs inside a guest (test-kernels.sh via run.sh) and, for
# the "host" row, on the host. Exits 1 if any package failed.
#
# Times come from /proc/uptime: busybox-free and good to 10 ms, and the
# guest's clock follows the host's under TCG.
set -uo pipefail
out=$(cd "$1" && pwd) bindir=$(cd "$2" && pwd)
shift 2
uname -r >"$out/uname"
timeout=${VM_TEST_TIMEOUT:-20m}
skip=${VM_TEST_SKIP:-} run=${VM_TEST_RUN:-} count=${VM_TEST_COUNT:-1}
status=0
uptime() { cut -d' ' -f1 /proc/uptime; }
for arg in "$@"; do
  name=${arg%%=*} dir=${arg#*=}
  start=$(uptime)
  echo "run-tests: $(uname -r): $name ..."
  (cd "$dir" && exec "$bindir/$name.test" -test.v=test2json -test.timeout="$timeout" -test.count="$count" -test.run="$run" -test.skip="$skip") \
    >"$out/$name.out" 2>&1
  rc=$?
  end=$(uptime)
  echo "$rc" >"$out/$name.rc"
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f\n", b - a }' >"$out/$name.seconds"
  echo "run-tests: $(uname -r): $name exit $rc after $(cat "$out/$name.seconds") s"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
