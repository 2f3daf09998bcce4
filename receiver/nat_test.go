//go:build linux

package receiver

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

// The node's connection tracking is asked only for records whose
// translation the socket's own packets may not have shown.
func TestNATLookupMayNeed(t *testing.T) {
	const node, pod = 4026531840, 4026532001
	own := bpf.Translation{Known: true, Local: netip.MustParseAddrPort("10.0.0.1:40000"), Peer: netip.MustParseAddrPort("10.96.0.10:80")}
	n := &natLookup{netns: node}
	for _, tt := range []struct {
		name  string
		netns uint32
		x     bpf.Translation
		want  bool
	}{
		{"node socket, its SYN or end seen", node, own, false},
		{"node socket, an end that came in (accepted, or open before start)", node, bpf.Translation{}, true},
		{"pod socket: translated again on the node", pod, own, true},
		{"pod socket, nothing seen", pod, bpf.Translation{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, n.mayNeed(&bpf.Event{Netns: tt.netns, Translation: tt.x}))
		})
	}
}
