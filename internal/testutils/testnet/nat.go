//go:build linux

package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
)

// RequireIptables skips a test that needs iptables and ip6tables when they
// are missing, or fails it under CI=true (make test installs them).
func RequireIptables(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"iptables", "ip6tables", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			if testenv.InCI() {
				t.Fatalf("%s is missing; make test installs it (Debian packages iptables, iproute2)", bin)
			}
			t.Skipf("skipping: %s is not installed (Debian packages iptables, iproute2)", bin)
		}
	}
}

// Run runs a command (iptables, ip6tables, ip) inside the namespace and
// fails the test, with the command's output, if it fails. NAT rules and
// routes made this way live and die with the namespace: the host's own
// tables are never touched.
func (n *Netns) Run(t testing.TB, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := func() ([]byte, error) {
		var out []byte
		err := n.Do(func() (err error) {
			out, err = cmd.CombinedOutput()
			return err
		})
		return out, err
	}()
	require.NoError(t, err, "%s: %s", cmd, out)
}

// Forward turns on forwarding of IPv4 and IPv6 packets in the namespace, as
// on a node that routes its pods' traffic.
func (n *Netns) Forward(t testing.TB) {
	t.Helper()
	require.NoError(t, n.Do(func() error {
		for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(f, []byte("1"), 0); err != nil {
				return fmt.Errorf("turn on forwarding: %w", err)
			}
		}
		return nil
	}))
}
