//go:build linux

package bpf

import (
	"io"
	"math/bits"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// sock_state.flags (sock_state.h).
const (
	sockOutgoing = 1 << 0
	sockEnded    = 1 << 2
)

// connSlotFreed is CONN_SLOT_FREED (conn_slots.h): the close time of an entry
// freed at once.
const connSlotFreed = 1

// slotsRun is a loaded and attached object whose connecting sockets keep
// their state in conn_slots (conn_slots.h).
type slotsRun struct {
	objs  *Objects
	slots *ebpf.Map
	cg    *testnet.Cgroup
	bits  int
}

func newSlotsRun(t *testing.T) *slotsRun {
	t.Helper()
	testenv.RequireRoot(t)
	cg := testnet.NewCgroup(t)
	objs, err := testLoad(Options{RingBufferSize: 1 << 16})
	require.NoError(t, err)
	t.Cleanup(func() { objs.Close() })
	if !objs.Features.Atomics || !objs.Features.EndsWithoutFINOrRST {
		t.Skipf("this kernel keeps every socket's state in storage (atomics %v, netflow_state %v)",
			objs.Features.Atomics, objs.Features.EndsWithoutFINOrRST)
	}
	require.NoError(t, objs.Attach(cg.Path))
	m := objs.objs.ConnSlots
	return &slotsRun{objs: objs, slots: m, cg: cg, bits: bits.TrailingZeros32(m.MaxEntries())}
}

// index is conn_slot_at's.
func (r *slotsRun) index(cookie uint64) uint32 {
	return uint32(cookie & (1<<r.bits - 1))
}

// slot returns the entry for a cookie.
func (r *slotsRun) slot(t *testing.T, cookie uint64) netflowConnSlot {
	t.Helper()
	var s netflowConnSlot
	require.NoError(t, r.slots.Lookup(r.index(cookie), &s))
	return s
}

// fill writes every entry, as held by sockets that do not exist.
func (r *slotsRun) fill(t *testing.T, s netflowConnSlot) {
	t.Helper()
	n := r.slots.MaxEntries()
	keys := make([]uint32, n)
	values := make([]netflowConnSlot, n)
	for i := range keys {
		keys[i] = uint32(i)
		values[i] = s
		values[i].Cookie = 1<<63 | uint64(i) // no cookie of a real socket
	}
	_, err := r.slots.BatchUpdate(keys, values, nil)
	require.NoError(t, err)
}

// connection makes a connection in the cgroup and returns the cookies of
// its client and server sockets and a function that ends it with the
// client's FIN.
func (r *slotsRun) connection(t *testing.T) (clientCookie, serverCookie uint64, end func()) {
	t.Helper()
	client, server := r.cg.Pair(t)
	clientCookie, err := testnet.Cookie(client)
	require.NoError(t, err)
	serverCookie, err = testnet.Cookie(server)
	require.NoError(t, err)
	return clientCookie, serverCookie, func() {
		require.NoError(t, client.Close())
		_, err := io.Copy(io.Discard, server)
		require.NoError(t, err)
		require.NoError(t, server.Close())
	}
}

// recordsOf returns the records written so far for the socket with this
// cookie, in order.
func recordsOf(t *testing.T, objs *Objects, cookie uint64) []Event {
	t.Helper()
	return recordsByCookie(t, objs)[cookie]
}

// requireOneEachExact checks that each of the two sockets has exactly one
// record, with what its start saw.
func requireOneEachExact(t *testing.T, objs *Objects, clientCookie, serverCookie uint64) {
	t.Helper()
	rd, err := objs.NewReader()
	require.NoError(t, err)
	defer rd.Close()
	time.Sleep(50 * time.Millisecond) // a second record would be written by now
	counts := map[uint64]int{}
	var client Event
	for _, e := range drain(t, rd) {
		counts[e.Cookie]++
		if e.Cookie == clientCookie {
			client = e
		}
	}
	assert.Equal(t, map[uint64]int{clientCookie: 1, serverCookie: 1}, counts)
	assert.Equal(t, DirectionOutgoing, client.Direction)
	assert.Equal(t, EndByLocal, client.EndBy)
	assert.Equal(t, EndFIN, client.EndReason)
	assert.NotZero(t, client.StartNs, "the SYN's start")
	assert.Equal(t, uint32(os.Getpid()), client.PID, "the owner taken at the SYN")
}

func TestConnectingSocketKeepsItsStateInTheTable(t *testing.T) {
	r := newSlotsRun(t)
	cookie, serverCookie, end := r.connection(t)
	s := r.slot(t, cookie)
	assert.Equal(t, cookie, s.Cookie, "the client's SYN took its entry")
	assert.NotZero(t, s.St.Flags&sockOutgoing)
	assert.Zero(t, s.St.ClosedNs)

	end()
	requireOneEachExact(t, r.objs, cookie, serverCookie)
	// TIME_WAIT takes over from the client's socket, which moves to CLOSE.
	require.Eventually(t, func() bool {
		s = r.slot(t, cookie)
		return s.St.ClosedNs != 0
	}, 5*time.Second, time.Millisecond, "netflow_state wrote the close")
	assert.Equal(t, cookie, s.Cookie, "tagged until another socket takes it")
	assert.NotZero(t, s.St.Flags&sockEnded)
	// The server's FIN moved the client to CLOSE in a softirq, after its
	// file was closed: no segment of it can follow.
	assert.EqualValues(t, connSlotFreed, s.St.ClosedNs, "freed at once")
}

// An abortive close moves the socket to CLOSE in the closing task, then sends
// the RST: the entry is kept for the grace, and the RST finds the end that
// netflow_state wrote (one record, the local RST).
func TestAbortiveCloseKeepsTheEntry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		abort func(t *testing.T, client, server *net.TCPConn)
	}{
		{"SO_LINGER 0", func(t *testing.T, client, _ *net.TCPConn) {
			t.Helper()
			require.NoError(t, client.SetLinger(0))
		}},
		{"unread data", func(t *testing.T, client, server *net.TCPConn) {
			t.Helper()
			_, err := server.Write([]byte("unread"))
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				info, err := testnet.TCPInfo(client)
				return err == nil && info.Bytes_received > 0
			}, 5*time.Second, time.Millisecond, "in the client's receive queue")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSlotsRun(t)
			client, server := r.cg.Pair(t)
			defer server.Close()
			cookie, err := testnet.Cookie(client)
			require.NoError(t, err)
			tc.abort(t, client, server)
			require.NoError(t, client.Close())
			_, _ = io.Copy(io.Discard, server) // until the RST

			s := r.slot(t, cookie)
			assert.Equal(t, cookie, s.Cookie)
			assert.Greater(t, s.St.ClosedNs, uint64(connSlotFreed), "kept: the close time")

			ends := recordsOf(t, r.objs, cookie)
			require.Len(t, ends, 1)
			assert.Equal(t, EndRST, ends[0].EndReason)
			assert.Equal(t, EndByLocal, ends[0].EndBy)
			assert.Equal(t, DirectionOutgoing, ends[0].Direction)
		})
	}
}

// A socket whose connect() was refused connects again: it takes its own entry
// back, and its second connection has one record with its own start.
func TestSocketConnectingAgainTakesItsEntryBack(t *testing.T) {
	r := newSlotsRun(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	closed, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	refused := closed.Addr().(*net.TCPAddr).Port
	require.NoError(t, closed.Close())

	var fd int
	r.cg.Run(t, func() {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
	})
	f := os.NewFile(uintptr(fd), "client")
	defer f.Close()
	loopback := [4]byte{127, 0, 0, 1}
	require.ErrorIs(t, unix.Connect(fd, &unix.SockaddrInet4{Port: refused, Addr: loopback}), unix.ECONNREFUSED)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.slot(t, cookie).St.ClosedNs != 0 }, 5*time.Second, time.Millisecond)

	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: loopback}))
	s := r.slot(t, cookie)
	assert.Equal(t, cookie, s.Cookie, "its own entry")
	assert.Zero(t, s.St.ClosedNs, "open again")
	server, err := ln.Accept()
	require.NoError(t, err)
	require.NoError(t, unix.Shutdown(fd, unix.SHUT_WR))
	_, err = io.Copy(io.Discard, server)
	require.NoError(t, err)
	require.NoError(t, server.Close())

	ends := recordsOf(t, r.objs, cookie)
	require.Len(t, ends, 2, "the refused connect's and the connection's")
	assert.Equal(t, EndByRemote, ends[0].EndBy, "refused")
	assert.Equal(t, EndFIN, ends[1].EndReason)
	assert.Equal(t, EndByLocal, ends[1].EndBy)
	assert.Greater(t, ends[1].StartNs, ends[0].TimeNs, "the second connection's own start")
}

// Where every entry is held by a socket that is open, connecting sockets
// take socket storage, as before the table.
func TestConnectingSocketTakesStorageWhenItsEntryIsHeld(t *testing.T) {
	r := newSlotsRun(t)
	r.fill(t, netflowConnSlot{St: netflowSockState{Flags: sockOutgoing}})
	cookie, serverCookie, end := r.connection(t)
	assert.NotEqual(t, cookie, r.slot(t, cookie).Cookie)
	end()
	requireOneEachExact(t, r.objs, cookie, serverCookie)
}

// An entry whose holder closed more than a second ago is taken over; one
// whose holder closed just now is not: the RST of an abortive close leaves
// after the move to CLOSE and must still find its socket's ended state.
func TestConnectingSocketTakesOverOnlyAnEntryClosedLongAgo(t *testing.T) {
	now := func() uint64 {
		var ts unix.Timespec
		require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts))
		return uint64(ts.Nano())
	}
	for _, tc := range []struct {
		name      string
		closedAgo time.Duration
		taken     bool
	}{
		{"closed 10 s ago", 10 * time.Second, true},
		{"closed now", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSlotsRun(t)
			closed := now() - uint64(tc.closedAgo)
			r.fill(t, netflowConnSlot{St: netflowSockState{Flags: sockOutgoing | sockEnded, ClosedNs: closed}})
			cookie, serverCookie, end := r.connection(t)
			assert.Equal(t, tc.taken, cookie == r.slot(t, cookie).Cookie)
			end()
			requireOneEachExact(t, r.objs, cookie, serverCookie)
		})
	}
}
