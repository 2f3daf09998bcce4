//go:build linux

package main

import (
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// The bench refuses a namespace where connections are tracked: here, one
// of the test's own, before and after a nat rule like podman's.
func TestBenchRefusesConnTracking(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testnet.NewNetns(t)
	require.NoError(t, ns.Do(checkNoConnTracking), "a new namespace tracks no connection")

	var fd int
	require.NoError(t, ns.Do(func() (err error) {
		fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	}))
	defer unix.Close(fd)
	conn, err := nftables.New(nftables.WithNetNSFd(fd))
	require.NoError(t, err)
	table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "nat"})
	chain := conn.AddChain(&nftables.Chain{Name: "POSTROUTING", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	// netavark's: masquerade what leaves through its bridge. Connections
	// that never match are tracked all the same.
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("podman0\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
		&expr.Masq{},
	}})
	require.NoError(t, conn.Flush())

	err = ns.Do(checkNoConnTracking)
	require.ErrorIs(t, err, errConnTracking)
	assert.ErrorContains(t, err, "entries after one loopback connection")
}
