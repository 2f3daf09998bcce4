//go:build linux

package receiver

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"golang.org/x/sys/unix"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// attrsByCookie returns every record's attributes by socket cookie.
func (h *harness) attrsByCookie() map[uint64]map[string]any {
	out := map[uint64]map[string]any{}
	h.eachRecord(func(_ pcommon.Resource, lr plog.LogRecord) {
		a := lr.Attributes().AsRaw()
		out[uint64(a[attrSocketCookie.String()].(int64))] = a
	})
	return out
}

func TestBytesSegmentsRTTAndDuration(t *testing.T) {
	h := newHarness(t)
	h.start()
	for _, tr := range transports(t) {
		t.Run(tr.name, func(t *testing.T) {
			before := time.Now()
			c := dial(t, tr, h, true, true) // the client sends "ping" (4 bytes)
			request, response := make([]byte, 10_000), make([]byte, 300_000)
			_, err := c.client.Write(request)
			require.NoError(t, err)
			readExactly(t, c.server, string(request))
			_, err = c.server.Write(response)
			require.NoError(t, err)
			readExactly(t, c.client, string(response))
			time.Sleep(20 * time.Millisecond) // the last ACKs
			// Retransmissions are the kernel's to decide (a slow emulated
			// machine has them): each record must hold the socket's own
			// count at its end, between what the socket said before and
			// after it. The client half-closes to end, so that it can
			// still be asked after.
			clientBefore, serverBefore := totalRetrans(t, c.client), totalRetrans(t, c.server)
			require.NoError(t, c.client.CloseWrite())
			require.NoError(t, readEnd(t, c.server))
			after := time.Now()
			clientAfter, serverAfter := totalRetrans(t, c.client), totalRetrans(t, c.server)
			require.NoError(t, c.client.Close())
			require.NoError(t, c.server.Close())

			// Wait for both records without stopping: the harness serves
			// every transport.
			var got map[uint64]map[string]any
			require.Eventually(t, func() bool {
				got = h.attrsByCookie()
				return got[c.clientCookie] != nil && got[c.serverCookie] != nil
			}, 5*time.Second, 20*time.Millisecond)

			for _, side := range []struct {
				cookie         uint64
				sent, received int64
				retrans        [2]int64 // at least, at most
			}{
				{c.clientCookie, 4 + 10_000, 300_000, [2]int64{clientBefore, clientAfter}},
				{c.serverCookie, 300_000, 4 + 10_000, [2]int64{serverBefore, serverAfter}},
			} {
				a := got[side.cookie]
				assert.Equal(t, side.sent, a[attrBytesSent.String()], "bytes sent")
				assert.Equal(t, side.received, a[attrBytesReceived.String()], "bytes received")
				assert.Equal(t, true, a[attrEstablished.String()])
				assert.NotContains(t, a, attrErrorType.String(), "a graceful end is no failure")
				assert.Greater(t, a[attrSegmentsSent.String()].(int64), int64(2))
				assert.Greater(t, a[attrSegmentsReceived.String()].(int64), int64(2))
				assert.Greater(t, a[attrRTT.String()].(float64), 0.0)
				assert.Less(t, a[attrRTT.String()].(float64), 1.0)
				assert.GreaterOrEqual(t, a[attrRetransmissions.String()], side.retrans[0], "retransmissions: the socket's count")
				assert.LessOrEqual(t, a[attrRetransmissions.String()], side.retrans[1], "retransmissions: the socket's count")
				if side.retrans[1] != 0 {
					t.Logf("the kernel retransmitted: %d to %d segments", side.retrans[0], side.retrans[1])
				}

				start := time.Unix(0, a[attrStartTime.String()].(int64))
				assert.False(t, start.Before(before.Add(-time.Millisecond)), "start %v before the test dialed at %v", start, before)
				dur := time.Duration(a[attrDuration.String()].(float64) * float64(time.Second))
				assert.Positive(t, dur)
				assert.LessOrEqual(t, dur, after.Sub(before)+time.Millisecond, "duration within the test's own bounds")
			}
		})
	}
}

// totalRetrans is the socket's count of retransmitted segments
// (tcpi_total_retrans, the counter that records carry).
func totalRetrans(t *testing.T, c *net.TCPConn) int64 {
	t.Helper()
	info, err := testnet.TCPInfo(c)
	require.NoError(t, err)
	return int64(info.Total_retrans)
}

func TestConnectTimeout(t *testing.T) {
	h := newHarness(t)
	h.start()
	a, _ := testnet.NewVethPair(t)
	nobody := a.Unanswered(t)

	var cookie uint64
	start := time.Now()
	h.cg.Run(t, func() {
		require.NoError(t, a.Do(func() (err error) {
			cookie, err = connectTimesOut(netip.AddrPortFrom(a.Addr4, 0), netip.AddrPortFrom(nobody, 80))
			return err
		}))
	})
	elapsed := time.Since(start)

	got, ok := timedOutRecord(t, h, cookie)
	if !ok {
		return
	}
	assert.Equal(t, "ETIMEDOUT", got[attrEndError.String()])
	assert.Equal(t, "timeout", got[attrErrorType.String()])
	assert.Equal(t, "local", got[attrEndBy.String()])
	assert.Equal(t, "outgoing", got[attrDirection.String()])
	assert.Equal(t, false, got[attrEstablished.String()])
	assert.Equal(t, a.Addr4.String(), got[attrSourceAddress.String()])
	assert.Equal(t, nobody.String(), got[attrDestinationAddress.String()])
	assert.Equal(t, int64(80), got[attrDestinationPort.String()])
	assert.GreaterOrEqual(t, got[attrSegmentsSent.String()], int64(2), "the SYN and its retransmissions")
	assert.Equal(t, got[attrSegmentsSent.String()].(int64)-1, got[attrRetransmissions.String()], "every segment after the SYN was a retransmission")
	assert.Equal(t, int64(0), got[attrSegmentsReceived.String()])
	assert.InDelta(t, elapsed.Seconds(), got[attrDuration.String()].(float64), 0.5)
	assert.Len(t, h.attrsByCookie(), 1)
}

// timedOutRecord stops the receiver and returns the attributes of the
// timed-out socket's record, which must be a timeout; false where the
// kernel cannot report ends without FIN or RST (and there is none).
func timedOutRecord(t *testing.T, h *harness, cookie uint64) (map[string]any, bool) {
	t.Helper()
	h.stop()
	got := h.attrsByCookie()[cookie]
	if !h.features.EndsWithoutFINOrRST {
		assert.Nil(t, got, "this kernel cannot report ends without FIN or RST")
		return nil, false
	}
	require.NotNil(t, got, "no record for the timed-out socket")
	assert.Equal(t, "timeout", got[attrEndReason.String()])
	return got, true
}

// connectTimesOut connects from local to server, which never answers,
// with one SYN retransmission: the connect gives up after about 3 s
// instead of about 2 min. It returns the socket's cookie.
func connectTimesOut(local, server netip.AddrPort) (uint64, error) {
	var cookie uint64
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(local), Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1)
			if serr == nil {
				cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
			}
		})
		return errors.Join(err, serr)
	}}
	d.SetMultipathTCP(false)
	if _, err := d.Dial("tcp", server.String()); !errors.Is(err, unix.ETIMEDOUT) {
		return 0, errors.Join(errors.New("want ETIMEDOUT"), err)
	}
	return cookie, nil
}

func TestRefusedConnectWasNeverEstablished(t *testing.T) {
	h := newHarness(t)
	h.start()
	var closedPort uint16
	ln, err := testnet.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	require.NoError(t, err)
	closedPort = testnet.AddrPort(ln.Addr()).Port()
	require.NoError(t, ln.Close())
	var cookie uint64
	h.cg.Run(t, func() {
		_, cookie, err = connectRefused(netip.MustParseAddr("127.0.0.1"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), closedPort))
		require.NoError(t, err)
	})
	h.stop()
	got := h.attrsByCookie()[cookie]
	require.NotNil(t, got)
	assert.Equal(t, false, got[attrEstablished.String()])
	assert.Equal(t, "rst", got[attrEndReason.String()])
	assert.Equal(t, "connection_refused", got[attrErrorType.String()])
}

func TestConnectGivenUpByTheApplication(t *testing.T) {
	h := newHarness(t)
	h.start()
	a, _ := testnet.NewVethPair(t)
	nobody := a.Unanswered(t)
	var cookie uint64
	h.cg.Run(t, func() {
		require.NoError(t, a.Do(func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			cookie, _ = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
			err = unix.Connect(fd, &unix.SockaddrInet4{Port: 80, Addr: nobody.As4()})
			if !errors.Is(err, unix.EINPROGRESS) {
				return err
			}
			time.Sleep(100 * time.Millisecond)
			return unix.Close(fd) // gave up before any answer
		}))
	})
	h.stop()
	got := h.attrsByCookie()[cookie]
	if !h.features.EndsWithoutFINOrRST {
		assert.Nil(t, got, "this kernel cannot report ends without FIN or RST")
		return
	}
	require.NotNil(t, got)
	assert.Equal(t, "closed", got[attrEndReason.String()])
	assert.Equal(t, false, got[attrEstablished.String()])
	assert.NotContains(t, got, attrEndError.String())
	assert.NotContains(t, got, attrErrorType.String(), "giving up a connect is no failure of the network")
}
