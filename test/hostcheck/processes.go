//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// process is one process as /proc/PID/stat shows it.
type process struct {
	pid, ppid int
	state     byte
	comm      string
	// cmdline is read only for the processes a report names.
	cmdline string
}

// readProcesses returns every process of the host by pid.
func readProcesses() (map[int]process, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	procs := map[int]process{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, err := readProcess(pid)
		if err != nil {
			continue // ended meanwhile
		}
		procs[pid] = p
	}
	return procs, nil
}

// readProcess parses /proc/PID/stat: "pid (comm) state ppid ...", where
// comm may hold spaces and parentheses, so it ends at the last ')'.
func readProcess(pid int) (process, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return process{}, err
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return process{}, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	rest := strings.Fields(string(b[end+1:]))
	if len(rest) < 2 || len(rest[0]) != 1 {
		return process{}, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	ppid, err := strconv.Atoi(rest[1])
	if err != nil {
		return process{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return process{pid: pid, ppid: ppid, state: rest[0][0], comm: string(b[open+1 : end])}, nil
}

// readCmdline reads the process's command line (kernel threads and
// processes that have ended have none: then its name, in brackets).
func (p process) readCmdline() string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
	cmd := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	if cmd == "" {
		cmd = "[" + p.comm + "]"
	}
	if len(cmd) > 200 {
		cmd = cmd[:200] + "..."
	}
	return cmd
}

// descendants returns the live processes below root (zombies hold nothing
// and go when reaped).
func descendants(procs map[int]process, root int) []process {
	var out []process
	for _, p := range procs {
		if p.state != 'Z' && isBelow(procs, p.pid, root) {
			out = append(out, p)
		}
	}
	return out
}

// isBelow reports whether process pid is a descendant of root.
func isBelow(procs map[int]process, pid, root int) bool {
	for range len(procs) {
		p, ok := procs[pid]
		if !ok || p.ppid == 0 {
			return false
		}
		if p.ppid == root {
			return true
		}
		pid = p.ppid
	}
	return false
}

// pidInName matches the names the project gives the cgroups it makes:
// netflowtcpend-WHAT-PID, netflowtcpend-WHAT-PID-N.
var pidInName = regexp.MustCompile(`^netflowtcpend-(?:[a-z0-9]+-)*?(\d+)(?:-\d+)*$`)

// notOursByName returns, for a name the project gives the cgroups it
// makes, why the cgroup is not this run's: the process it is named after
// is alive and not hostcheck or below it (another test run on this
// machine). "" for every other name.
func (h *host) notOursByName(procs map[int]process) func(name string) string {
	return func(name string) string {
		m := pidInName.FindStringSubmatch(name)
		if m == nil {
			return ""
		}
		pid, _ := strconv.Atoi(m[1])
		p, alive := procs[pid]
		if !alive || pid == h.self || isBelow(procs, pid, h.self) {
			return ""
		}
		return fmt.Sprintf("named after process %d (%s), which is alive and not of this run", pid, p.comm)
	}
}

// commandResult is how the command ended.
type commandResult struct {
	code        int
	interrupted bool
	// leftover are the processes that it started and that were still
	// running settle after it ended (hostcheck has ended them since).
	leftover []process
}

func (r commandResult) how() string {
	switch {
	case r.interrupted:
		return " (interrupted)"
	case r.code != 0:
		return fmt.Sprintf(" (which failed with exit status %d)", r.code)
	}
	return ""
}

// runCommand runs args with env as hostcheck's child. hostcheck is the
// child subreaper of everything below it, so a process that the command
// leaves running (a daemon that forked away, a container's monitor) comes
// back to it: such processes get settle to end after the command, then are
// reported and ended. SIGINT, SIGTERM and SIGHUP are passed to the command,
// and hostcheck carries on to the comparison.
func runCommand(args, env []string, settle time.Duration) (commandResult, error) {
	var res commandResult
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return res, fmt.Errorf("become the child subreaper: %w", err)
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return res, err
	}
	children := make(chan os.Signal, 1)
	signal.Notify(children, unix.SIGCHLD)
	defer signal.Stop(children)
	interrupts := make(chan os.Signal, 4)
	signal.Notify(interrupts, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(interrupts)

	cmd, err := os.StartProcess(path, args, &os.ProcAttr{Env: env, Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
	if err != nil {
		return res, err
	}
	// Children are reaped here, with wait4(-1): the command, and the
	// orphans that came back to hostcheck.
	exited := false
	reap := func() {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err != nil || pid <= 0 {
				return
			}
			if pid == cmd.Pid {
				exited, res.code = true, exitCode(ws)
			}
		}
	}
	for reap(); !exited; reap() {
		select {
		case <-children:
		case s := <-interrupts:
			res.interrupted = true
			_ = cmd.Signal(s)
		}
	}

	deadline := time.Now().Add(settle)
	for {
		procs, err := readProcesses()
		if err != nil {
			return res, err
		}
		left := descendants(procs, os.Getpid())
		if len(left) == 0 {
			return res, nil
		}
		if time.Now().After(deadline) {
			res.leftover = left
			break
		}
		select {
		case <-children:
		case <-interrupts:
		case <-time.After(200 * time.Millisecond):
		}
		reap()
	}
	// Their command lines go with them.
	for i, p := range res.leftover {
		res.leftover[i].cmdline = p.readCmdline()
	}
	return res, endProcesses(res.leftover, reap)
}

// endProcesses sends SIGTERM to each process, and SIGKILL to those still
// there 5 s later, and reaps them (they are hostcheck's children by now, or
// become so when their parent among them ends).
func endProcesses(procs []process, reap func()) error {
	for _, sig := range []syscall.Signal{unix.SIGTERM, unix.SIGKILL} {
		for _, p := range procs {
			_ = unix.Kill(p.pid, sig)
		}
		for range 50 {
			reap()
			all, err := readProcesses()
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(procs, func(p process) bool { _, ok := all[p.pid]; return ok }) {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return errors.New("processes left by the command did not end after SIGKILL")
}

func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
