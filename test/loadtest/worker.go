//go:build linux

package loadtest

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/churn"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// A Worker is this same executable run again, inside the watched cgroup,
// making the churn: so every socket of the watched cgroup is one the churn
// made, while the process that drives the test (scraping the collector's
// metrics, serving the sink) stays outside. It reports each socket's
// cookie on its standard output.

const workerEnv = "NETFLOWTCPEND_LOADTEST_WORKER"

// Frames on the worker's standard output: a tag byte and a uint64.
const (
	tagSocket  = 'k' // a socket's cookie
	tagConns   = 'n' // connections made, at the end
	tagLookups = 'l' // lookups made, at the end
	tagPort    = 'p' // the server's port, at the end
	tagErrors  = 'x' // failed lookups and connections, at the end (the first one's message on stderr)
)

// RunWorkerIfAsked runs the worker and exits when this process was started
// as one; otherwise it returns at once. Call it first in main or TestMain
// of whatever starts workers.
func RunWorkerIfAsked() {
	spec := os.Getenv(workerEnv)
	if spec == "" {
		return
	}
	if err := runWorker(spec); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest worker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runWorker(spec string) error {
	var o churn.Options
	if err := json.Unmarshal([]byte(spec), &o); err != nil {
		return err
	}
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	var mu sync.Mutex
	frame := func(tag byte, v uint64) {
		var b [9]byte
		b[0] = tag
		binary.LittleEndian.PutUint64(b[1:], v)
		mu.Lock()
		_, _ = out.Write(b[:])
		mu.Unlock()
	}
	o.OnSocket = func(cookie uint64) { frame(tagSocket, cookie) }

	// Runs until its standard input closes, or SIGTERM.
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	stopFlush := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopFlush:
				return
			case <-t.C:
				mu.Lock()
				_ = out.Flush()
				mu.Unlock()
			}
		}
	}()
	res, err := churn.Run(ctx, o)
	close(stopFlush)
	<-flushed
	frame(tagConns, uint64(res.Conns))
	frame(tagLookups, uint64(res.Lookups))
	frame(tagPort, uint64(res.Port))
	frame(tagErrors, uint64(res.Errors))
	if res.FirstError != "" {
		fmt.Fprintln(os.Stderr, res.FirstError)
	}
	if ferr := out.Flush(); ferr != nil && err == nil {
		err = ferr
	}
	return err
}

// Worker is a running worker process.
type Worker struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	start  time.Time
	stderr strings.Builder

	mu      sync.Mutex
	sockets map[uint64]struct{}
	res     churn.Result
	done    chan struct{} // closed when the output ended
	readErr error
}

// StartWorker starts this executable as a worker in cgroup (a cgroup v2
// directory) and, if ns is not nil, in that network namespace. The
// executable must call RunWorkerIfAsked first thing.
func StartWorker(cgroup string, ns *testnet.Netns, o churn.Options) (*Worker, error) {
	if o.OnSocket != nil {
		return nil, errors.New("a worker reports sockets through Sockets, not OnSocket")
	}
	spec, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.Open(cgroup)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	cmd := exec.Command(exe, "-test.run=^$") // a test binary runs no tests should it not stop early
	cmd.Env = append(os.Environ(), workerEnv+"="+string(spec))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	w := &Worker{cmd: cmd, sockets: map[uint64]struct{}{}, done: make(chan struct{})}
	cmd.Stderr = &w.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	w.stdin = stdin
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if ns != nil {
		err = ns.Start(cmd)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return nil, err
	}
	w.start = time.Now()
	go w.read(stdout)
	return w, nil
}

func (w *Worker) read(r io.Reader) {
	defer close(w.done)
	br := bufio.NewReaderSize(r, 64<<10)
	var b [9]byte
	for {
		if _, err := io.ReadFull(br, b[:]); err != nil {
			if !errors.Is(err, io.EOF) {
				w.mu.Lock()
				w.readErr = err
				w.mu.Unlock()
			}
			return
		}
		v := binary.LittleEndian.Uint64(b[1:])
		w.mu.Lock()
		switch b[0] {
		case tagSocket:
			w.sockets[v] = struct{}{}
		case tagConns:
			w.res.Conns = int64(v)
		case tagLookups:
			w.res.Lookups = int64(v)
		case tagPort:
			w.res.Port = uint16(v)
		case tagErrors:
			w.res.Errors = int64(v)
		}
		w.mu.Unlock()
	}
}

// SocketCount returns how many sockets the worker has reported so far.
func (w *Worker) SocketCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.sockets)
}

// Sockets returns a copy of the cookies of the sockets the worker has
// reported; after Stop, all it made.
func (w *Worker) Sockets() map[uint64]struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[uint64]struct{}, len(w.sockets))
	for c := range w.sockets {
		out[c] = struct{}{}
	}
	return out
}

// SocketsNotIn returns the sockets reported so far that are not in old.
func (w *Worker) SocketsNotIn(old map[uint64]struct{}) []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []uint64
	for c := range w.sockets {
		if _, ok := old[c]; !ok {
			out = append(out, c)
		}
	}
	return out
}

// Stop asks the worker to stop, waits for it and returns its result.
func (w *Worker) Stop() (churn.Result, error) {
	_ = w.stdin.Close()
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
	err := w.cmd.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.res.Seconds = time.Since(w.start).Seconds()
	if err == nil {
		err = w.readErr
	}
	if err != nil {
		return w.res, fmt.Errorf("worker: %w: %s", err, strings.TrimSpace(w.stderr.String()))
	}
	if w.res.Errors > 0 {
		w.res.FirstError = strings.TrimSpace(w.stderr.String())
	}
	return w.res, nil
}

// Kill ends the worker at once; for cleanups.
func (w *Worker) Kill() {
	_ = w.cmd.Process.Kill()
	<-w.done
	_ = w.cmd.Wait()
}
