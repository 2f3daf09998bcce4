//go:build linux

package receiver

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

// server.port is the accepting side's, whichever side ended the
// connection.
func TestServerPort(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:443")
	for _, tt := range []struct {
		name      string
		direction bpf.Direction
		endBy     bpf.EndBy
		src, dst  netip.AddrPort
		want      int
	}{
		{"outgoing, ended here", bpf.DirectionOutgoing, bpf.EndByLocal, a, b, 443},
		{"outgoing, ended by the server", bpf.DirectionOutgoing, bpf.EndByRemote, b, a, 443},
		{"incoming, ended here", bpf.DirectionIncoming, bpf.EndByLocal, b, a, 443},
		{"incoming, ended by the client", bpf.DirectionIncoming, bpf.EndByRemote, a, b, 443},
		{"unknown", bpf.DirectionUnknown, bpf.EndByLocal, a, b, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := bpf.Event{Direction: tt.direction, EndBy: tt.endBy, Source: tt.src, Destination: tt.dst}
			assert.Equal(t, tt.want, serverPort(&e))
		})
	}
}

// Without a logs pipeline, the records converted for metrics.attributes
// carry the event's own fields and those keys only.
func TestRecordAttributes(t *testing.T) {
	set := recordAttributes([]string{attrPeerAddress.String(), attrProcessExecutable.String()})
	assert.Equal(t, len(coreAttributes)+2, set.count())
	assert.True(t, set.has(attrPeerAddress))
	assert.True(t, set.has(attrDirection))
	assert.False(t, set.has(attrSocketCookie))
}
