//go:build linux

package bpf

import (
	"errors"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// drainRaw returns every record in the ring.
func drainRaw(t *testing.T, rd *ringbuf.Reader) [][]byte {
	t.Helper()
	var raws [][]byte
	rd.SetDeadline(time.Now())
	for {
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return raws
		}
		require.NoError(t, err)
		raws = append(raws, rec.RawSample)
	}
}

// drain returns the connection-end records in the ring; there must be no
// other kind but new cgroups (the host's, once the programs are attached).
func drain(t *testing.T, rd *ringbuf.Reader) []Event {
	t.Helper()
	var events []Event
	for _, raw := range drainRaw(t, rd) {
		if TypeOf(raw) == RecordCgroup {
			continue
		}
		var e Event
		require.NoError(t, e.Decode(raw))
		events = append(events, e)
	}
	return events
}

// recordsByCookie returns the connection-end records written so far, in
// order, by socket cookie.
func recordsByCookie(t *testing.T, objs *Objects) map[uint64][]Event {
	t.Helper()
	rd, err := objs.NewReader()
	require.NoError(t, err)
	defer rd.Close()
	time.Sleep(50 * time.Millisecond) // a second record would be written by now
	got := map[uint64][]Event{}
	for _, e := range drain(t, rd) {
		got[e.Cookie] = append(got[e.Cookie], e)
	}
	return got
}

// A record that does not fit in the ring buffer is counted once per socket,
// and the socket's next FIN or RST writes it after all, marked as retried.
func TestLostRecordsAreCountedAndRetried(t *testing.T) { lostRecords(t) }

// The same with the object for kernels without atomic operations, whose
// once-only flags are guarded by a bpf_spin_lock.
func TestLostRecordsAreCountedAndRetriedWithoutAtomics(t *testing.T) {
	lostRecords(t, WithoutAtomics)
}

func lostRecords(t *testing.T, without ...string) {
	t.Helper()
	testenv.RequireRoot(t)
	cg := testnet.NewCgroup(t)
	objs, err := testLoad(Options{RingBufferSize: 4096, Without: without}) // room for about 46 records
	require.NoError(t, err)
	if slices.Contains(without, WithoutAtomics) {
		require.False(t, objs.Features.Atomics)
	}
	t.Cleanup(func() { objs.Close() })
	rd, err := objs.NewReader()
	require.NoError(t, err)
	t.Cleanup(func() { rd.Close() })
	require.NoError(t, objs.Attach(cg.Path))

	victimClient, victimServer := cg.Pair(t)
	clientCookie, err := testnet.Cookie(victimClient)
	require.NoError(t, err)
	serverCookie, err := testnet.Cookie(victimServer)
	require.NoError(t, err)

	// Fill the ring without reading it.
	for i := 0; ; i++ {
		require.Less(t, i, 200, "the ring buffer never filled")
		s, err := objs.Stats()
		require.NoError(t, err)
		if s.Lost > 0 {
			break
		}
		c, sv := cg.Pair(t)
		require.NoError(t, c.Close())
		_, _ = io.Copy(io.Discard, sv)
		require.NoError(t, sv.Close())
	}
	before, err := objs.Stats()
	require.NoError(t, err)

	// Both victim sockets end while the ring is full.
	require.NoError(t, victimClient.CloseWrite())
	_, err = io.Copy(io.Discard, victimServer)
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // a retransmitted FIN must not count again
	after, err := objs.Stats()
	require.NoError(t, err)
	assert.Equal(t, before.Lost+2, after.Lost, "each socket's lost record is counted once")

	for _, e := range drain(t, rd) {
		require.NotContains(t, []uint64{clientCookie, serverCookie}, e.Cookie)
	}

	// The sockets' next FIN: the server's own and the client receiving it.
	require.NoError(t, victimServer.Close())
	_, err = io.Copy(io.Discard, victimClient)
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)

	got := map[uint64]Event{}
	for _, e := range drain(t, rd) {
		got[e.Cookie] = e
	}
	require.Contains(t, got, clientCookie)
	require.Contains(t, got, serverCookie)
	assert.Equal(t, FlagRetried, got[clientCookie].Flags&FlagRetried)
	assert.Equal(t, FlagRetried, got[serverCookie].Flags&FlagRetried)
	// The retry reports the end that was lost: the client's FIN.
	assert.Equal(t, EndByLocal, got[clientCookie].EndBy)
	assert.Equal(t, EndByRemote, got[serverCookie].EndBy)
	assert.Equal(t, got[clientCookie].Source, got[serverCookie].Source, "both name the client as the sender")
	assert.Equal(t, DirectionOutgoing, got[clientCookie].Direction)
	assert.Equal(t, DirectionIncoming, got[serverCookie].Direction)
	assert.NotZero(t, got[clientCookie].StartNs, "the handshake was observed")
	assert.NotZero(t, got[serverCookie].StartNs, "the handshake was observed on the listener")
	assert.Less(t, got[clientCookie].StartNs, got[clientCookie].TimeNs)
}

// A socket open before the programs that sent its FIN then writes no record
// for the FIN it receives after: its end was its own FIN, which the
// programs did not see. Its peer, which had sent none, writes its own end.
func TestSocketThatSentItsFINBeforeAttachWritesNoRecord(t *testing.T) {
	testenv.RequireRoot(t)
	cg := testnet.NewCgroup(t)
	client, server := cg.Pair(t)
	clientCookie, err := testnet.Cookie(client)
	require.NoError(t, err)
	serverCookie, err := testnet.Cookie(server)
	require.NoError(t, err)
	require.NoError(t, client.CloseWrite()) // FIN_WAIT2, a full socket
	_, err = io.Copy(io.Discard, server)
	require.NoError(t, err)

	objs, err := testLoad(Options{RingBufferSize: 1 << 16})
	require.NoError(t, err)
	t.Cleanup(func() { objs.Close() })
	require.NoError(t, objs.Attach(cg.Path))

	require.NoError(t, server.Close())
	_, err = io.Copy(io.Discard, client) // the server's FIN reached the client
	require.NoError(t, err)
	got := recordsByCookie(t, objs)
	assert.Empty(t, got[clientCookie], "client")
	require.Len(t, got[serverCookie], 1, "server")
	assert.Equal(t, EndByLocal, got[serverCookie][0].EndBy)
	assert.Equal(t, EndFIN, got[serverCookie][0].EndReason)
	assert.Zero(t, got[serverCookie][0].StartNs, "the handshake was before the programs")
}
