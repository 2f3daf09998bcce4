//go:build linux

// Command hostcheck runs a command and fails when the host is not as it was
// before the command ran: `make test` and `make test-kernels` run their test
// steps through it, so that a test that leaves something behind fails the
// run, naming what it left.
//
//	hostcheck [-settle 15s] [-v] -- command [args...]
//
// It takes a snapshot of the host, runs the command, takes another and
// compares them. It compares only what a test run can leave behind:
//
//   - processes: any process that the command started and that is still
//     running after it ended (hostcheck is their child subreaper, so
//     orphans come back to it). They are named, then ended (SIGTERM, then
//     SIGKILL), which also frees the namespaces, sockets and BPF objects
//     they held;
//   - firewall: nftables tables, chains and rules (iptables-nft's too) and
//     legacy x_tables tables, in hostcheck's network namespace (a nat table
//     there turns on connection tracking for every connection of the host);
//   - cgroups: every cgroup under the cgroup v2 root (found in
//     /proc/self/mountinfo), and the top level of each cgroup v1 hierarchy
//     (where container runtimes make their parents, such as libpod_parent);
//   - network namespaces bound to a path (`ip netns add`, container
//     runtimes) or named in /run/netns, and the network links of
//     hostcheck's namespace;
//   - mounts of hostcheck's mount namespace;
//   - BPF programs, maps and links that no process holds (pinned, or
//     attached to a cgroup or device with nothing left to detach them), and
//     pinned BPF objects in every bpf filesystem;
//   - temporary files: the command runs with TMPDIR set to a new directory,
//     and whatever is left in it is reported (then removed with it); plus
//     the paths outside TMPDIR where the container tools the tests run keep
//     state (/run/libpod, /dev/shm/libpod_lock, ...: sharedPaths).
//
// Removals count too (a test that deletes a rule, link, cgroup or mount
// the host had before).
//
// What it ignores, and why (so that it is not flaky on a machine that does
// other things during a 30-minute run):
//
//   - cgroups of systemd units (any path with a component named *.slice,
//     *.scope, *.service, ...): timers, logins and services make and remove
//     them all the time, and tests never make a unit;
//   - BPF objects that a process holds: the command's own processes are
//     ended first, so a holder is a process outside the run (systemd loads
//     programs for the units it starts; other users of the machine run their
//     own), which frees them itself. Likewise programs attached only to a
//     systemd unit's cgroup, and objects that existed before;
//   - cgroups named after a process that is alive and not of this run
//     (netflowtcpend-test-PID-N, netflowtcpend-podman-PID: the project names
//     its cgroups after the process that makes them): another run of the
//     tests on the same machine, still going;
//   - network namespaces that only processes hold (see processes), the
//     contents of temporary directories other than the run's TMPDIR (others
//     write there; every tool the tests run honours TMPDIR), and mounts that
//     the system makes by itself (autofs-triggered binfmt_misc, login
//     sessions' /run/user/UID, systemd's /run/credentials, snaps);
//   - anything that comes back to how it was within -settle after the
//     command ended: the kernel frees some objects asynchronously (a cgroup
//     that sockets still reference, a program after its last reference).
//
// It needs root to see everything; without root it compares what it can
// read and says what it could not, and under CI=true that is a failure.
//
// Exit status: the command's when it failed, else 1 when the host differs,
// else 0. HOSTCHECK=off on the make command line runs the tests without it
// (for a machine where other test runs make the comparison meaningless).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

func main() {
	settle := flag.Duration("settle", 15*time.Second, "how long a difference may take to go away after the command ended, and leftover processes to end by themselves")
	verbose := flag.Bool("v", false, "also say what was compared, and which new objects were not the run's, and why")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: hostcheck [-settle DURATION] [-v] -- command [args...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	code, err := run(flag.Args(), *settle, *verbose, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostcheck:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// run runs the command under the check, reports to out and returns the
// exit status.
func run(args []string, settle time.Duration, verbose bool, out io.Writer) (int, error) {
	h, err := thisHost()
	if err != nil {
		return 1, err
	}
	defer h.close()
	// A short name: tests make paths below it that must stay short (podman
	// refuses a --runroot longer than 50 characters).
	tmp, err := os.MkdirTemp("", "hostcheck-")
	if err != nil {
		return 1, err
	}
	// Like /tmp: tests run programs as other users (nobody), who write here.
	if err := os.Chmod(tmp, os.ModeSticky|0o777); err != nil {
		return 1, err
	}
	h.runTemp = tmp
	defer os.RemoveAll(tmp)

	before := h.snapshot()
	res, err := runCommand(args, append(os.Environ(), "TMPDIR="+tmp), settle)
	if err != nil {
		return 1, err
	}
	after := waitForSameHost(h, before, settle)

	diff := compare(before, after)
	diff.processes = res.leftover
	if verbose {
		fmt.Fprintf(out, "hostcheck: compared %s\n", after.counts())
		if s := diff.ignoredString(); s != "" {
			fmt.Fprintf(out, "hostcheck: new, but not the run's:\n%s", s)
		}
	}
	report := diff.String()
	unread := after.unread
	if len(unread) > 0 {
		fmt.Fprintf(out, "hostcheck: not compared:\n  %s\n", strings.Join(unread, "\n  "))
	}
	code := res.code
	if report != "" {
		fmt.Fprintf(out, "hostcheck: the host differs after `%s`%s:\n%s",
			strings.Join(args, " "), res.how(), report)
		if code == 0 {
			code = 1
		}
	}
	if len(unread) > 0 && os.Getenv("CI") == "true" && code == 0 {
		return 1, errors.New("CI=true, and the host could not be compared in full (run as root)")
	}
	if report == "" {
		what := "the host is"
		if len(unread) > 0 {
			what = "what could be compared is"
		}
		fmt.Fprintf(out, "hostcheck: %s as it was before `%s`%s\n", what, strings.Join(args, " "), res.how())
	}
	return code, nil
}

// waitForSameHost takes snapshots until one shows no difference from
// before or settle has passed, and returns the last.
func waitForSameHost(h *host, before *snapshot, settle time.Duration) *snapshot {
	deadline := time.Now().Add(settle)
	for {
		after := h.snapshot()
		if compare(before, after).empty() || time.Now().After(deadline) {
			return after
		}
		time.Sleep(500 * time.Millisecond)
	}
}
