//go:build linux

package e2e

import (
	"path/filepath"
	"testing"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testproc"
)

// Helper processes own the sockets of the sandbox test: the test binary,
// run again under another name (helperClient, helperServer) in a cgroup
// and network namespace of the test's choice, talking over its standard
// input and output.

// The helpers' executable names, as records give them.
const (
	helperClient = "nfclient"
	helperServer = "nfserver"
)

// helper is a running helper process (internal/testutils/testproc).
type helper = testproc.Proc

// helperBinaries copies the test binary into dir under both helper names
// and returns dir.
func helperBinaries(t *testing.T, dir string) string {
	t.Helper()
	testproc.Binary(t, dir, helperClient, helperServer)
	return dir
}

// startHelper starts the helper named name from dir, as root, in cgroup cg
// and network namespace ns (nil: the test's). A server ("serve") has read
// its client's first bytes when it says "socket": for a connection made
// before the collector starts, that read is over before it starts too.
func startHelper(t *testing.T, dir, name string, cg *testnet.Cgroup, ns *testnet.Netns, mode string, args ...string) *helper {
	t.Helper()
	if mode == "serve" {
		mode = "serve-read"
	}
	return testproc.Start(t, filepath.Join(dir, name), testproc.Options{Cgroup: cg, Netns: ns}, mode, args...)
}

// exchange ends a connection between a server and a client helper: the
// client closes, the server reads to the end and closes.
func exchange(srv, cli *helper) {
	srv.Say("wait-eof")
	cli.Close()
	srv.Expect("eof")
	srv.Close()
}
