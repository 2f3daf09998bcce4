//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// closeTracer is the peer the table compares with: the cheapest thing that
// reports connection ends, bpftrace (from Debian) printing one line per TCP
// socket that moves to CLOSE, host-wide, into a file.
const closeTracer = `tracepoint:sock:inet_sock_set_state /args->newstate == 7 && args->protocol == 6/ {
	printf("%llu %s:%d %s:%d %d\n", nsecs, ntop(args->saddr), args->sport, ntop(args->daddr), args->dport, args->oldstate);
}`

// tracer is a running close tracer.
type tracer struct {
	cmd    *exec.Cmd
	out    string
	exited chan error // cmd.Wait's result, once
}

// tracefsMounted makes sure tracefs is mounted, which bpftrace reads its
// tracepoints from, and returns a function that unmounts it again if it
// was not.
func tracefsMounted() (func(), error) {
	const dir = "/sys/kernel/tracing"
	if _, err := os.Stat(filepath.Join(dir, "events")); err == nil {
		return func() {}, nil
	}
	if err := unix.Mount("nodev", dir, "tracefs", 0, ""); err != nil {
		return nil, fmt.Errorf("mount tracefs on %s (bpftrace needs it): %w", dir, err)
	}
	return func() { _ = unix.Unmount(dir, 0) }, nil
}

// startTracer starts bpftrace in cgroup home, writing into a file in dir,
// and waits until it has attached.
func startTracer(dir, home string) (*tracer, error) {
	out := filepath.Join(dir, "closes.txt")
	_ = os.Remove(out)
	cmd := exec.Command("bpftrace", "-o", out, "-e", closeTracer)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cg, err := os.Open(home)
	if err != nil {
		return nil, err
	}
	defer cg.Close()
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bpftrace (make bench installs it): %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// It writes this line, then attaches.
		if b, _ := os.ReadFile(out); strings.Contains(string(b), "Attaching") {
			time.Sleep(500 * time.Millisecond)
			return &tracer{cmd: cmd, out: out, exited: exited}, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("bpftrace exited (%w): %s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return nil, errors.New("bpftrace did not attach within 30 s: " + stderr.String())
		}
	}
}

func (t *tracer) pid() int { return t.cmd.Process.Pid }

// stop ends bpftrace and returns how many lines it wrote.
func (t *tracer) stop() (int, error) {
	_ = t.cmd.Process.Signal(syscall.SIGINT)
	var werr error
	select {
	case werr = <-t.exited:
	case <-time.After(10 * time.Second):
		_ = t.cmd.Process.Kill()
		werr = <-t.exited
	}
	_ = werr // ended by a signal: its exit status says nothing more
	b, err := os.ReadFile(t.out)
	if err != nil {
		return 0, err
	}
	return strings.Count(string(b), "\n") - 1, nil // less the Attaching line
}
