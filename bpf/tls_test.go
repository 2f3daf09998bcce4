//go:build linux

package bpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testhello"
	tp "github.com/netflowtcpend/netflowtcpend/internal/testutils/testpacket"
)

// The TLS slots are global, so unlike the other test-run tests these run
// sequences on one loaded object: a SYN, then the segments after it. Each
// run still gets a fresh dummy socket, which is not a listener: the
// listener's side (a SYN arriving) is in the integration tests.

func newTLSTestRun(t *testing.T, limit int) *testRun {
	t.Helper()
	r := newTestRunWith(t, Options{RingBufferSize: 1 << 20, TLSHelloLimit: limit})
	requireTLS(t, r.objs)
	return r
}

// requireTLS skips a test of what TLS server names give on a kernel whose
// verifier refused the TLS programs (TestTLSUnavailable covers those);
// under CI=true, where the kernels are known to take them, that fails.
func requireTLS(t testing.TB, objs *Objects) {
	t.Helper()
	if !objs.Features.TLSServerNames {
		if testenv.InCI() {
			t.Fatalf("the TLS programs did not load: %v", objs.Unavailable)
		}
		t.Skip("skipping: this kernel's verifier refused the TLS programs")
	}
}

// Both objects, with atomics and without (Linux 5.10, 5.11), carry the TLS
// programs: a ClientHello's bytes are copied.
func TestTLSOnBothObjects(t *testing.T) {
	for _, without := range [][]string{nil, {WithoutAtomics}} {
		t.Run(fmt.Sprint(without), func(t *testing.T) {
			r := newTestRunWith(t, Options{RingBufferSize: 1 << 20, TLSHelloLimit: MaxTLSHello, Without: without})
			requireTLS(t, r.objs)
			if without != nil {
				assert.False(t, r.objs.Features.Atomics, "the object with the spin lock")
			}
			small := testhello.Hello{ServerName: "small.example"}.Bytes()
			_, _ = r.runTLS(t, r.objs.objs.Egress, tcpFrame(v4a, v4b, 100, tp.SYN, nil))
			pieces, _ := r.runTLS(t, r.objs.objs.Egress, tcpFrame(v4a, v4b, 101, tp.ACK|tp.PSH, small))
			require.Len(t, pieces, 1)
			assert.Equal(t, small, pieces[0].Payload)
		})
	}
}

// Without the TLS programs (a kernel whose verifier refuses them) a
// ClientHello gives nothing, and Unavailable says so.
func TestTLSUnavailable(t *testing.T) {
	r := newTestRunWith(t, Options{RingBufferSize: 1 << 20, TLSHelloLimit: MaxTLSHello, Without: []string{WithoutTLS}})
	require.False(t, r.objs.Features.TLSServerNames)
	var said bool
	for _, u := range r.objs.Unavailable {
		said = said || strings.Contains(u.Absent, "netflow.tls.server_name")
	}
	assert.True(t, said, "Unavailable names the server name")
	small := testhello.Hello{ServerName: "small.example"}.Bytes()
	for _, f := range [][]byte{tcpFrame(v4a, v4b, 100, tp.SYN, nil), tcpFrame(v4a, v4b, 101, tp.ACK|tp.PSH, small),
		tcpFrame(v4a, v4b, 200, tp.SYN, small)} {
		pieces, _ := r.runTLS(t, r.objs.objs.Egress, f)
		assert.Empty(t, pieces)
	}
}

// A kernel whose verifier refuses the TLS programs gets the programs
// without them, and Unavailable carries the refusal; no ClientHello is
// copied.
func TestTLSProgramsRefused(t *testing.T) {
	refuseTLS = func(spec *ebpf.CollectionSpec) {
		// R0 is never set: every verifier refuses this.
		spec.Programs["netflow_tls_egress"].Instructions = asm.Instructions{asm.Return()}
	}
	t.Cleanup(func() { refuseTLS = nil })
	r := newTestRunWith(t, Options{RingBufferSize: 1 << 20, TLSHelloLimit: MaxTLSHello})
	require.False(t, r.objs.Features.TLSServerNames)
	i := slices.IndexFunc(r.objs.Unavailable, func(u Unavailable) bool { return u.Program == tlsPrograms })
	require.GreaterOrEqual(t, i, 0, "Unavailable names the TLS programs: %v", r.objs.Unavailable)
	require.ErrorContains(t, r.objs.Unavailable[i].Err, "R0 !read_ok", "the verifier's refusal")
	assert.Contains(t, r.objs.Unavailable[i].Absent, "netflow.tls.server_name")
	small := testhello.Hello{ServerName: "small.example"}.Bytes()
	for _, f := range [][]byte{tcpFrame(v4a, v4b, 100, tp.SYN, nil), tcpFrame(v4a, v4b, 101, tp.ACK|tp.PSH, small)} {
		pieces, _ := r.runTLS(t, r.objs.objs.Egress, f)
		assert.Empty(t, pieces)
	}
}

// runTLS runs prog on frame once and returns the TLS pieces it wrote
// (payloads copied) and how many records of other kinds.
func (r *testRun) runTLS(t *testing.T, prog *ebpf.Program, frame []byte) ([]TLSPiece, int) {
	t.Helper()
	r.pass(t, prog, frame, 1)
	var pieces []TLSPiece
	others := 0
	for _, raw := range drainRaw(t, r.rd) {
		if TypeOf(raw) != RecordTLS {
			others++
			continue
		}
		var p TLSPiece
		require.NoError(t, p.Decode(raw))
		p.Payload = slices.Clone(p.Payload)
		pieces = append(pieces, p)
	}
	return pieces, others
}

// tcpFrame is a segment from src to dst as an Ethernet frame, IPv4 or
// IPv6 by the addresses.
func tcpFrame(src, dst netip.AddrPort, seq uint32, flags uint8, payload []byte) []byte {
	s := tp.Segment{Src: src, Dst: dst, Seq: seq, Ack: 1, Flags: flags, Payload: payload}
	if src.Addr().Is4() {
		return tp.Ethernet(s.IPv4())
	}
	return tp.Ethernet(s.IPv6())
}

// piece is a TLS piece expected: bytes of the stream from offset.
type piece struct {
	offset, limit int
	payload       []byte
}

func TestTestRunTLS(t *testing.T) {
	r := newTLSTestRun(t, MaxTLSHello)
	egress, ingress := r.objs.objs.Egress, r.objs.objs.Ingress
	hello := testhello.Hello{ServerName: "www.example.com", KeyShareLen: 1216, Padding: 200, ServerNameLast: true}.Bytes()
	require.Greater(t, len(hello), 1500)
	small := testhello.Hello{ServerName: "small.example"}.Bytes()
	fragmented := testhello.Hello{ServerName: "frag.example", KeyShareLen: 100, RecordLen: 90}.Bytes()
	garbage := append([]byte{22, 3, 1, 1, 44, 1, 0, 1, 40}, make([]byte, 400)...) // claims a 300-byte record
	http := []byte("GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n")

	type step struct {
		prog    *ebpf.Program
		seq     uint32 // relative to the SYN's
		flags   uint8
		payload []byte
		want    []piece
	}
	const ack, data = tp.ACK, tp.ACK | tp.PSH
	tests := []struct {
		name     string
		src, dst netip.AddrPort
		steps    []step
	}{
		{"one segment, ipv4", v4a, v4b, []step{
			{egress, 0, tp.SYN, nil, nil},
			{egress, 1, data, small, []piece{{0, len(small), small}}},
			{egress, 1 + uint32(len(small)), data, []byte("more"), nil}, // past the ClientHello
			{egress, 1, data, small, nil},                               // a retransmission: all was copied
		}},
		{"three segments, ipv6", v6a, v6b, []step{
			{egress, 0, tp.SYN, nil, nil},
			{egress, 1, data, hello[:600], []piece{{0, len(hello), hello[:600]}}},
			{egress, 601, ack, hello[600:1200], []piece{{600, len(hello), hello[600:1200]}}},
			{egress, 1201, data, hello[1200:], []piece{{1200, len(hello), hello[1200:]}}},
			{egress, 1 + uint32(len(hello)), data, small, nil},
		}},
		{"the second segment first", v4a, netip.MustParseAddrPort("93.184.216.34:8443"), []step{
			{egress, 0, tp.SYN, nil, nil},
			{egress, 601, data, hello[600:], nil}, // before the first: not copied
			{egress, 1, data, hello[:600], []piece{{0, len(hello), hello[:600]}}},
			{egress, 601, data, hello[600:], []piece{{600, len(hello), hello[600:]}}},
		}},
		{"a segment that goes past the ClientHello", v4a, netip.MustParseAddrPort("93.184.216.34:993"), []step{
			{egress, 0, tp.SYN, nil, nil},
			{egress, 1, data, append(slices.Clone(small), "early data"...), []piece{{0, len(small), small}}},
		}},
		{"a first segment of three bytes", v4a, netip.MustParseAddrPort("93.184.216.34:10443"), []step{
			{egress, 0, tp.SYN, nil, nil},
			{egress, 1, data, small[:3], []piece{{0, MaxTLSHello, small[:3]}}},
			{egress, 4, data, small[3:], []piece{{3, MaxTLSHello, small[3:]}}},
		}},
		{"records of 90 bytes: copied up to the cap", v4a, netip.MustParseAddrPort("93.184.216.34:2443"), []step{
			{egress, 0, tp.SYN, nil, nil},
			{egress, 1, data, fragmented, []piece{{0, MaxTLSHello, fragmented}}},
		}},
		{"TCP Fast Open: the ClientHello in the SYN", v4a, netip.MustParseAddrPort("93.184.216.34:3443"), []step{
			{egress, 0, tp.SYN, small, []piece{{0, len(small), small}}},
			{egress, 1 + uint32(len(small)), data, small, nil},
		}},
		{"TCP Fast Open: a first part in the SYN", v6a, netip.MustParseAddrPort("[2001:db8::2]:3443"), []step{
			{egress, 0, tp.SYN, hello[:500], []piece{{0, len(hello), hello[:500]}}},
			{egress, 501, data, hello[500:], []piece{{500, len(hello), hello[500:]}}},
		}},
		{"plaintext", v4a, netip.MustParseAddrPort("93.184.216.34:80"), []step{
			{egress, 0, tp.SYN, nil, nil},
			{egress, 1, data, http, nil},
			{egress, 1 + uint32(len(http)), data, small, nil}, // TLS later in the stream: not its start
		}},
		{"garbage that starts like TLS: copied up to what its header claims", v4a, netip.MustParseAddrPort("93.184.216.34:4443"), []step{
			{egress, 0, tp.SYN, nil, nil},
			{egress, 1, data, garbage, []piece{{0, 305, garbage[:305]}}},
		}},
		{"a ServerHello-like first segment", v4a, netip.MustParseAddrPort("93.184.216.34:5443"), []step{
			{egress, 0, tp.SYN, nil, nil},
			{egress, 1, data, []byte{22, 3, 3, 0, 50, 2, 0, 0, 46, 3, 3}, nil},
		}},
		{"no SYN seen", v4a, netip.MustParseAddrPort("93.184.216.34:6443"), []step{
			{egress, 1, data, small, nil},
		}},
		{"the other side's bytes", v4a, netip.MustParseAddrPort("93.184.216.34:7443"), []step{
			{egress, 0, tp.SYN, nil, nil},
			{ingress, 1, data, small, nil}, // received, on a socket that is no listener's
		}},
		{"a ClientHello with a FIN: not looked at", v4a, netip.MustParseAddrPort("93.184.216.34:9444"), []step{
			{egress, 0, tp.SYN, nil, nil},
			{egress, 1, tp.FIN | tp.ACK | tp.PSH, small, nil},
		}},
		{"a SYN that ends (SYN-FIN)", v4a, netip.MustParseAddrPort("93.184.216.34:9443"), []step{
			{egress, 0, tp.SYN | tp.FIN, small, nil},
			{egress, 1, data, small, nil},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() { _, _ = requireArmedMirrorsLimit(t, r.objs) }()
			const isn = 0xfffffe00 // the stream wraps around 2^32
			for i, s := range tt.steps {
				src, dst := tt.src, tt.dst
				pieces, _ := r.runTLS(t, s.prog, tcpFrame(src, dst, isn+s.seq, s.flags, s.payload))
				require.Len(t, pieces, len(s.want), "step %d", i)
				for j, w := range s.want {
					p := pieces[j]
					assert.Equal(t, w.offset, p.Offset, "step %d: offset", i)
					assert.Equal(t, w.limit, p.Limit, "step %d: limit", i)
					assert.Equal(t, w.payload, p.Payload, "step %d: payload", i)
					assert.Equal(t, src, p.Source)
					assert.Equal(t, dst, p.Destination)
					assert.Equal(t, s.prog == egress, p.Egress)
					assert.False(t, p.Listener)
					assert.NotZero(t, p.Cookie)
					assert.NotZero(t, p.TimeNs)
				}
			}
		})
	}
	// Some cases leave their slot armed (no data after the SYN), others
	// disarmed (the ClientHello copied, or plaintext): both happened.
	nArmed, nDisarmed := requireArmedMirrorsLimit(t, r.objs)
	assert.NotZero(t, nArmed, "armed slots")
	assert.NotZero(t, nDisarmed, "disarmed slots")
}

// tlsSlotValue is struct tls_slot (maps.h).
type tlsSlotValue struct {
	Base    uint32
	Limit   uint16
	Started uint16
}

// requireArmedMirrorsLimit checks tls_armed against the slots: a slot's
// byte is 1 exactly while its limit is not 0. A byte left at 0 would hide
// a ClientHello from the fast path; one left at 1 would cost the fast path
// its slot read again. It returns how many slots are armed, and how many
// were and are no more.
func requireArmedMirrorsLimit(t *testing.T, objs *Objects) (nArmed, nDisarmed int) {
	t.Helper()
	var slots [1 << tlsSlotBits]tlsSlotValue
	var armed [1 << tlsSlotBits]uint8
	bss := make([]byte, objs.objs.BSS.ValueSize())
	require.NoError(t, objs.objs.BSS.Lookup(uint32(0), bss))
	load := loadNetflowSpinlock
	if objs.Features.Atomics {
		load = loadNetflow
	}
	spec, err := load()
	require.NoError(t, err)
	for _, v := range []struct {
		name string
		into any
	}{{"tls_slots", &slots}, {"tls_armed", &armed}} {
		vs := spec.Variables[v.name]
		require.NotNil(t, vs, v.name)
		require.NoError(t, binary.Read(bytes.NewReader(bss[vs.Offset:vs.Offset+vs.Size()]), binary.NativeEndian, v.into), v.name)
	}
	for i, s := range slots {
		require.Equal(t, s.Limit != 0, armed[i] == 1, "slot %d: limit %d, armed %d", i, s.Limit, armed[i])
		if armed[i] == 1 {
			nArmed++
		} else if s.Base != 0 {
			nDisarmed++
		}
	}
	return nArmed, nDisarmed
}

// With TLS off, nothing is copied.
func TestTestRunTLSOff(t *testing.T) {
	r := newTLSTestRun(t, 0)
	small := testhello.Hello{ServerName: "small.example"}.Bytes()
	for _, f := range [][]byte{
		tcpFrame(v4a, v4b, 100, tp.SYN, nil), tcpFrame(v4a, v4b, 101, tp.ACK|tp.PSH, small),
		tcpFrame(v4a, v4b, 100, tp.SYN, small),
	} {
		pieces, _ := r.runTLS(t, r.objs.objs.Egress, f)
		assert.Empty(t, pieces)
	}
}

// A smaller limit caps what is copied.
func TestTestRunTLSLimit(t *testing.T) {
	r := newTLSTestRun(t, 1024)
	hello := testhello.Hello{ServerName: "www.example.com", KeyShareLen: 1216}.Bytes()
	_, _ = r.runTLS(t, r.objs.objs.Egress, tcpFrame(v4a, v4b, 100, tp.SYN, nil))
	pieces, _ := r.runTLS(t, r.objs.objs.Egress, tcpFrame(v4a, v4b, 101, tp.ACK|tp.PSH, hello))
	require.Len(t, pieces, 1)
	assert.Equal(t, 1024, pieces[0].Limit)
	assert.Equal(t, hello[:1024], pieces[0].Payload)
}

// MaxTLSHello is the programs' scratch buffer for a piece, and the loader
// takes no more.
func TestMaxTLSHelloIsTheScratchBuffer(t *testing.T) {
	testenv.RequireRoot(t)
	spec, err := loadNetflow()
	require.NoError(t, err)
	assert.Equal(t, uint32(TLSHeaderSize+MaxTLSHello), spec.Maps["tls_scratch"].ValueSize)
	_, err = Load(Options{TLSHelloLimit: MaxTLSHello + 1})
	assert.ErrorContains(t, err, "TLS hello limit 8193 is not within 0..8192")
}
