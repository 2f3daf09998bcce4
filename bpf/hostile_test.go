//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/require"

	tp "github.com/netflowtcpend/netflowtcpend/internal/testutils/testpacket"
)

// Hostile packets: the compiled programs run under BPF_PROG_TEST_RUN on
// frames that are random, mutated, truncated or lying about their lengths.
// Whatever the frame, both programs let it through, and every record they
// write is one the frame could have caused: the reference parser below says,
// from the frame's bytes alone, which records a frame causes, and the
// programs must write exactly those.
//
// Test-run gives each run a fresh dummy socket (PLATFORM.md): no TCP state,
// so a FIN or RST in a well-formed TCP header ends it, and no storage. Frames
// the programs cannot tie to a TCP or UDP socket (not IP, other protocols)
// are the "no socket" case: they must cause nothing.

// hostileDNSLimit is dns.payload_limit for these runs: below the largest
// frame test-run takes, so that long DNS payloads are cut.
const hostileDNSLimit = 1024

// hostileTLSLimit is the TLS hello limit for these runs: below the largest
// frame test-run takes, so that long ClientHellos are cut.
const hostileTLSLimit = 1024

// expected is what one run of a program on a frame must write.
type expected struct {
	end *Event      // nil: no connection-end record
	dns *DNSMessage // nil: no DNS record
	tls *TLSPiece   // nil: no TLS record
}

// IP protocol numbers and IPv6 extension headers, as parse.h knows them.
const (
	ipprotoHopOpts  = 0
	ipprotoTCP      = 6
	ipprotoUDP      = 17
	ipprotoRouting  = 43
	ipprotoFragment = 44
	ipprotoAH       = 51
	ipprotoDstOpts  = 60
	maxIPv6Ext      = 6 // MAX_IPV6_EXT
	thFIN, thRST    = 0x01, 0x04
)

// expect is the reference parser: which records a frame causes when the
// egress (or ingress) program sees it on a socket without state. It follows
// docs/reliability.md, "Hostile packets": IPv4 (any header length from 20
// bytes, first fragments only) or IPv6 behind up to six extension headers
// (later fragments carry no transport header), a TCP header whose data offset lies within the packet
// or a UDP header; a FIN or RST ends the connection; a segment or datagram
// to port 53 (egress) or from it (ingress) with a payload is a DNS message,
// of which at most the payload limit is copied. Lengths are the packet's
// own, never the headers' claims: the kernel has trimmed a real packet to
// its IP length before these hooks. TLS pieces follow tls.h, whose slots
// live across runs: tlsModel keeps them as the programs must, and expect
// updates it.
func expect(frame []byte, egress bool, tm *tlsModel) expected {
	if len(frame) < 14 {
		return expected{}
	}
	pkt := frame[14:]
	var src, dst netip.Addr
	var proto byte
	var l4 int
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[0]&0x0f < 5 {
			return expected{}
		}
		if pkt[6]&0x1f != 0 || pkt[7] != 0 {
			return expected{} // a later fragment
		}
		proto, l4 = pkt[9], int(pkt[0]&0x0f)*4
		src, dst = netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20]))
	case 0x86dd:
		if len(pkt) < 40 || pkt[0]>>4 != 6 {
			return expected{}
		}
		proto, l4 = pkt[6], 40
		src, dst = netip.AddrFrom16([16]byte(pkt[8:24])).Unmap(), netip.AddrFrom16([16]byte(pkt[24:40])).Unmap()
		for range maxIPv6Ext {
			if proto != ipprotoHopOpts && proto != ipprotoRouting && proto != ipprotoDstOpts &&
				proto != ipprotoFragment && proto != ipprotoAH {
				break
			}
			if l4+4 > len(pkt) {
				return expected{}
			}
			ext := pkt[l4 : l4+4]
			switch proto {
			case ipprotoFragment:
				if binary.BigEndian.Uint16(ext[2:])&0xfff8 != 0 {
					return expected{} // a later fragment
				}
				l4 += 8
			case ipprotoAH:
				l4 += (int(ext[1]) + 2) * 4
			default:
				l4 += (int(ext[1]) + 1) * 8
			}
			proto = ext[0]
		}
	default:
		return expected{} // not IP
	}

	var sport, dport uint16
	var flags byte
	var payload []byte
	switch proto {
	case ipprotoUDP:
		if l4+8 > len(pkt) {
			return expected{}
		}
		payload = pkt[l4+8:]
	case ipprotoTCP:
		if l4+14 > len(pkt) {
			return expected{}
		}
		doff := int(pkt[l4+12]>>4) * 4
		if doff < 20 || l4+doff > len(pkt) {
			return expected{}
		}
		flags = pkt[l4+13]
		payload = pkt[l4+doff:]
	default:
		return expected{} // no TCP or UDP socket to tie it to
	}
	sport, dport = binary.BigEndian.Uint16(pkt[l4:]), binary.BigEndian.Uint16(pkt[l4+2:])
	source, destination := netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)

	var want expected
	if port := sport; (egress && dport == 53 || !egress && port == 53) && len(payload) > 0 {
		want.dns = &DNSMessage{
			Source: source, Destination: destination, TCP: proto == ipprotoTCP, Egress: egress,
			WireLen: len(payload), Payload: payload[:min(len(payload), hostileDNSLimit)],
		}
	}
	if proto == ipprotoTCP {
		want.tls = tm.segment(pkt[:l4], pkt[l4:], flags, payload, source, destination, egress)
	}
	if proto == ipprotoTCP && flags&(thFIN|thRST) != 0 {
		want.end = &Event{Source: source, Destination: destination, Direction: DirectionUnknown,
			EndBy: EndByRemote, EndReason: EndFIN}
		if egress {
			want.end.EndBy = EndByLocal
		}
		if flags&thRST != 0 {
			want.end.EndReason = EndRST
		}
	}
	return want
}

// hostileRun runs both programs on frames and checks each run's verdict
// and records against expect.
type hostileRun struct {
	*testRun
	tls  *tlsModel
	runs int
	// Records the runs wrote, by kind.
	ends, dnss, tlss int
	// shortIP: this kernel's test-run takes IP frames shorter than the
	// fixed IP header (Linux 5.10 does; later kernels refuse them).
	shortIP bool
}

func newHostileRun(t testing.TB) *hostileRun {
	t.Helper()
	r := &hostileRun{testRun: newTestRunWith(t, Options{RingBufferSize: 1 << 16,
		DNSPayloadLimit: hostileDNSLimit, TLSHelloLimit: hostileTLSLimit}), tls: newTLSModel(hostileTLSLimit)}
	if !r.objs.Features.TLSServerNames {
		r.tls = newTLSModel(0) // a verifier that refused the TLS programs: none run
	}
	short := make([]byte, 14)
	binary.BigEndian.PutUint16(short[12:], 0x0800)
	_, err := r.objs.objs.Egress.Run(&ebpf.RunOptions{Data: short, Repeat: 1})
	r.shortIP = err == nil
	return r
}

// check runs both programs on frame and returns what was wrong, if
// anything. Frames that test-run itself refuses are not runs.
func (r *hostileRun) check(frame []byte) error {
	if !r.testRunTakes(frame) {
		return nil
	}
	for _, p := range []struct {
		prog   *ebpf.Program
		egress bool
	}{{r.objs.objs.Egress, true}, {r.objs.objs.Ingress, false}} {
		verdict, err := p.prog.Run(&ebpf.RunOptions{Data: frame, Repeat: 1})
		if err != nil {
			return fmt.Errorf("test-run of %d bytes: %w", len(frame), err)
		}
		r.runs++
		if verdict != 1 {
			return fmt.Errorf("egress %v: verdict %d, want 1 (pass)", p.egress, verdict)
		}
		want := expect(frame, p.egress, r.tls)
		if want.end != nil {
			r.ends++
		}
		if want.dns != nil {
			r.dnss++
		}
		if want.tls != nil {
			r.tlss++
		}
		if err := r.records(want); err != nil {
			return fmt.Errorf("egress %v: %w", p.egress, err)
		}
	}
	return nil
}

// testRunTakes says whether test-run takes the frame: an Ethernet header,
// for IPv4 and IPv6 at least the fixed IP header (shorter IP packets never
// reach a socket; kernels before 5.11 or so take them anyway, and then the
// programs see them too), and at most about a page (bpf_test_init).
func (r *hostileRun) testRunTakes(frame []byte) bool {
	if len(frame) < 14 || len(frame) > maxTestRunFrame {
		return false
	}
	if r.shortIP {
		return true
	}
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		return len(frame) >= 14+20
	case 0x86dd:
		return len(frame) >= 14+40
	}
	return true
}

// maxTestRunFrame is the longest frame test-run takes for cgroup_skb on
// x86-64: a 4 KiB page less the headroom and the skb_shared_info.
const maxTestRunFrame = 3712

// records reads what the run wrote and compares it with want.
func (r *hostileRun) records(want expected) error {
	var ends []Event
	var dnss []DNSMessage
	var tlss []TLSPiece
	if r.rd.AvailableBytes() > 0 { // skip the syscalls when the ring is empty
		r.rd.SetDeadline(time.Now())
		for {
			rec, err := r.rd.Read()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return err
			}
			switch TypeOf(rec.RawSample) {
			case RecordTCPEnd:
				var e Event
				if err := e.Decode(rec.RawSample); err != nil {
					return fmt.Errorf("end record does not decode: %w", err)
				}
				ends = append(ends, e)
			case RecordDNS:
				var m DNSMessage
				if err := m.Decode(rec.RawSample); err != nil {
					return fmt.Errorf("DNS record does not decode: %w", err)
				}
				m.Payload = slices.Clone(m.Payload)
				dnss = append(dnss, m)
			case RecordTLS:
				var p TLSPiece
				if err := p.Decode(rec.RawSample); err != nil {
					return fmt.Errorf("TLS record does not decode: %w", err)
				}
				p.Payload = slices.Clone(p.Payload)
				tlss = append(tlss, p)
			default:
				return fmt.Errorf("record of unknown type %d", TypeOf(rec.RawSample))
			}
		}
	}

	switch {
	case want.end == nil && len(ends) > 0:
		return fmt.Errorf("end record the frame cannot cause: %+v", ends[0])
	case want.end != nil && len(ends) != 1:
		return fmt.Errorf("%d end records, want 1 like %+v", len(ends), *want.end)
	case want.end != nil:
		if err := sameEnd(*want.end, ends[0]); err != nil {
			return err
		}
	}
	switch {
	case want.dns == nil && len(dnss) > 0:
		return fmt.Errorf("DNS record the frame cannot cause: %+v", dnss[0])
	case want.dns != nil && len(dnss) != 1:
		return fmt.Errorf("%d DNS records, want 1 like %+v", len(dnss), *want.dns)
	case want.dns != nil:
		if err := sameDNS(*want.dns, dnss[0]); err != nil {
			return err
		}
	}
	switch {
	case want.tls == nil && len(tlss) > 0:
		return fmt.Errorf("TLS record the frame cannot cause: %+v", tlss[0])
	case want.tls != nil && len(tlss) != 1:
		return fmt.Errorf("%d TLS records, want 1 like %+v", len(tlss), *want.tls)
	case want.tls != nil:
		if err := sameTLS(*want.tls, tlss[0]); err != nil {
			return err
		}
	}
	return nil
}

func sameTLS(want, got TLSPiece) error {
	w := fmt.Sprintf("%v %v egress %v listener %v offset %d limit %d payload %x", want.Source, want.Destination, want.Egress,
		want.Listener, want.Offset, want.Limit, want.Payload)
	g := fmt.Sprintf("%v %v egress %v listener %v offset %d limit %d payload %x", got.Source, got.Destination, got.Egress,
		got.Listener, got.Offset, got.Limit, got.Payload)
	if w != g {
		return fmt.Errorf("TLS record %s, want %s", g, w)
	}
	if got.Cookie == 0 || got.TimeNs == 0 {
		return fmt.Errorf("TLS record without cookie or time")
	}
	return nil
}

// frameView is what a test-run end record holds that the frame decides,
// and what a fresh dummy socket must leave zero.
type frameView struct {
	Source, Destination      netip.AddrPort
	Direction                Direction
	EndBy                    EndBy
	EndReason                EndReason
	Flags, PID               uint32
	StartNs                  uint64
	Executable               string
	BytesSent, BytesReceived uint64
	SegsSent, SegsReceived   uint32
}

func viewOf(e Event) frameView {
	return frameView{Source: e.Source, Destination: e.Destination, Direction: e.Direction, EndBy: e.EndBy, EndReason: e.EndReason,
		Flags: e.Flags, PID: e.PID, StartNs: e.StartNs, Executable: e.Executable,
		BytesSent: e.BytesSent, BytesReceived: e.BytesReceived, SegsSent: e.SegsSent, SegsReceived: e.SegsReceived}
}

func sameEnd(want, got Event) error {
	if viewOf(want) != viewOf(got) {
		return fmt.Errorf("end record %+v, want %+v", viewOf(got), viewOf(want))
	}
	if got.Cookie == 0 || got.TimeNs == 0 {
		return fmt.Errorf("end record without cookie or time: %+v", got)
	}
	return nil
}

func sameDNS(want, got DNSMessage) error {
	w := fmt.Sprintf("%v %v tcp %v egress %v wire %d payload %x", want.Source, want.Destination, want.TCP, want.Egress, want.WireLen, want.Payload)
	g := fmt.Sprintf("%v %v tcp %v egress %v wire %d payload %x", got.Source, got.Destination, got.TCP, got.Egress, got.WireLen, got.Payload)
	if w != g {
		return fmt.Errorf("DNS record %s, want %s", g, w)
	}
	if got.Cookie == 0 || got.TimeNs == 0 {
		return fmt.Errorf("DNS record without cookie or time")
	}
	return nil
}

// The kernel's limits on test-run frames are what testRunTakes says: the
// hostile tests skip no frame the kernel would take.
func TestTestRunFrameLimits(t *testing.T) {
	r := newHostileRun(t)
	for _, etherType := range []uint16{0x0800, 0x86dd, 0x0806, 0x0001} {
		frame := make([]byte, maxTestRunFrame+2)
		binary.BigEndian.PutUint16(frame[12:], etherType)
		for n := range frame {
			_, err := r.objs.objs.Egress.Run(&ebpf.RunOptions{Data: frame[:n], Repeat: 1})
			require.Equal(t, r.testRunTakes(frame[:n]), err == nil, "ethertype %#04x, %d bytes: %v", etherType, n, err)
		}
	}
}

// hostileCases is how many frames TestTestRunHostileFrames runs through both
// programs.
const hostileCases = 100_000

// Both programs on 100,000 frames: well-formed segments and datagrams, IPv4
// options and IPv6 extension header chains of 0 to 8 headers, each header
// field swept through its values, truncations at every offset, lengths that
// lie, DNS messages that lie about their counts, frames that are not IP or
// not TCP/UDP, and random mutations of all of these, from a fixed seed.
func TestTestRunHostileFrames(t *testing.T) {
	r := newHostileRun(t)
	g := newFrameGen(1)
	begin := time.Now()
	cases := 0
	for cases < hostileCases {
		frame := g.next()
		if !r.testRunTakes(frame) {
			continue
		}
		cases++
		if err := r.check(frame); err != nil {
			t.Fatalf("case %d (%s), frame %x: %v", cases, g.what, frame, err)
		}
	}
	t.Logf("%d frames, %d program runs in %v; %d runs wrote an end record, %d a DNS record, %d a TLS record",
		cases, r.runs, time.Since(begin).Round(time.Millisecond), r.ends, r.dnss, r.tlss)
	// The frames reach the interesting paths, not only the early returns.
	require.Greater(t, r.ends, hostileCases/10)
	require.Greater(t, r.dnss, hostileCases/20)
	if r.objs.Features.TLSServerNames {
		require.Greater(t, r.tlss, hostileCases/100)
	}
}

// frameGen generates frames from a fixed seed: first the systematic
// sections, then random mutations of the base frames for ever.
type frameGen struct {
	rnd   *rand.Rand
	bases [][]byte
	queue [][]byte
	what  string // the section of the last frame, for failure messages
	step  int
}

func newFrameGen(seed uint64) *frameGen {
	g := &frameGen{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	g.bases = baseFrames(g.rnd)
	return g
}

var (
	hostA4  = netip.MustParseAddr("10.0.0.1")
	hostB4  = netip.MustParseAddr("93.184.216.34")
	hostA6  = netip.MustParseAddr("2001:db8::1")
	hostB6  = netip.MustParseAddr("2001:db8::2")
	mapped6 = netip.MustParseAddr("::ffff:10.0.0.9")
)

// dnsMessage is a DNS header with the given counts, then body: counts that
// promise more records than follow, or fewer.
func dnsMessage(id, flags, qd, an, ns, ar uint16, body []byte) []byte {
	b := make([]byte, 12, 12+len(body))
	for i, v := range []uint16{id, flags, qd, an, ns, ar} {
		binary.BigEndian.PutUint16(b[2*i:], v)
	}
	return append(b, body...)
}

// lyingDNS returns DNS payloads, honest and lying.
func lyingDNS(rnd *rand.Rand) [][]byte {
	question := []byte("\x07example\x03com\x00\x00\x01\x00\x01")
	answer := []byte("\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x5d\xb8\xd8\x22")
	loop := []byte("\xc0\x0c\xc0\x0c\xc0\x0c") // a compression pointer to itself
	random := make([]byte, 300)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	return [][]byte{
		dnsMessage(0x1234, 0x0100, 1, 0, 0, 0, question),                                                   // a query
		dnsMessage(0x1234, 0x8180, 1, 1, 0, 0, append(slices.Clone(question), answer...)),                  // its answer
		dnsMessage(0x1234, 0x8180, 0xffff, 0xffff, 0xffff, 0xffff, question),                               // counts far beyond the message
		dnsMessage(0x1234, 0x8180, 0, 0, 0, 0, append(slices.Clone(question), answer...)),                  // records beyond the counts
		dnsMessage(0x1234, 0x8180, 1, 3, 0, 0, append(append(slices.Clone(question), answer...), loop...)), // a pointer loop
		dnsMessage(0xffff, 0xffff, 1, 1, 1, 1, nil),                                                        // the header alone
		[]byte("\x12"),     // less than a header
		random[:12],        // a header of noise
		random,             // noise
		make([]byte, 1500), // zeros, longer than the payload limit
	}
}

// baseFrames are well-formed frames of every kind the programs handle, and
// of kinds they must ignore.
func baseFrames(rnd *rand.Rand) [][]byte {
	var frames [][]byte
	add := func(ip []byte) { frames = append(frames, tp.Ethernet(ip)) }
	type pair struct{ a, b netip.Addr }
	pairs := []pair{{hostA4, hostB4}, {hostA6, hostB6}, {mapped6, hostB6}}
	flagSets := []uint8{tp.SYN, tp.SYN | tp.ACK, tp.ACK, tp.PSH | tp.ACK, tp.FIN | tp.ACK, tp.FIN | tp.PSH | tp.ACK,
		tp.RST, tp.RST | tp.ACK, 0xff, 0}
	ports := [][2]uint16{{40000, 443}, {40000, 53}, {53, 40000}, {53, 53}, {0, 0}}
	for _, p := range pairs {
		for _, f := range flagSets {
			for _, pt := range ports {
				s := tp.Segment{Src: netip.AddrPortFrom(p.a, pt[0]), Dst: netip.AddrPortFrom(p.b, pt[1]),
					Seq: rnd.Uint32(), Ack: rnd.Uint32(), Flags: f}
				if f&tp.PSH != 0 {
					s.Payload = []byte("\x00\x1dhello, this is a segment")
				}
				if p.a.Is4() {
					add(s.IPv4())
				} else {
					add(s.IPv6())
				}
			}
		}
	}
	// DNS over UDP and TCP, both ways, both families.
	for _, msg := range lyingDNS(rnd) {
		for _, p := range pairs[:2] {
			for _, toServer := range []bool{true, false} {
				src, dst := netip.AddrPortFrom(p.a, 40053), netip.AddrPortFrom(p.b, 53)
				if !toServer {
					src, dst = dst, src
				}
				d := tp.Datagram{Src: src, Dst: dst, Payload: msg}
				prefixed := binary.BigEndian.AppendUint16(nil, uint16(len(msg)))
				for _, prefix := range [][]byte{prefixed, {0, 0}, {0xff, 0xff}} {
					s := tp.Segment{Src: src, Dst: dst, Seq: 1, Ack: 1, Flags: tp.PSH | tp.ACK, Payload: append(slices.Clone(prefix), msg...)}
					if p.a.Is4() {
						add(s.IPv4())
					} else {
						add(s.IPv6())
					}
				}
				if p.a.Is4() {
					add(d.IPv4())
				} else {
					add(d.IPv6())
				}
			}
		}
	}
	// IPv6 extension header chains of 0 to 8 headers ending in a FIN and in
	// a DNS query.
	extTypes := []uint8{tp.HopByHop, tp.Routing, tp.Fragment, tp.AuthHeader, tp.DestOptions}
	for n := 0; n <= 8; n++ {
		for range 4 {
			exts := make([]tp.Ext, n)
			for i := range exts {
				exts[i] = tp.Ext{Type: extTypes[rnd.IntN(len(extTypes))]}
			}
			add(tp.Segment{Src: netip.AddrPortFrom(hostA6, 40000), Dst: netip.AddrPortFrom(hostB6, 443), Flags: tp.FIN | tp.ACK}.IPv6(exts...))
			add(tp.Segment{Src: netip.AddrPortFrom(hostA6, 40000), Dst: netip.AddrPortFrom(hostB6, 53), Flags: tp.PSH | tp.ACK,
				Payload: []byte("\x00\x0c\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")}.IPv6(exts...))
		}
	}
	// IPv4 options: header lengths 6 to 15 words.
	for words := 6; words <= 15; words++ {
		fin := tp.Segment{Src: netip.AddrPortFrom(hostA4, 40000), Dst: netip.AddrPortFrom(hostB4, 443), Flags: tp.RST}.IPv4()
		add(withIPv4Options(fin, ipv4Options(rnd, (words-5)*4)))
		q := tp.Datagram{Src: netip.AddrPortFrom(hostA4, 40000), Dst: netip.AddrPortFrom(hostB4, 53), Payload: lyingDNS(rnd)[0]}.IPv4()
		add(withIPv4Options(q, ipv4Options(rnd, (words-5)*4)))
	}
	// Not TCP or UDP: ICMP, GRE, SCTP, ICMPv6, no next header, 255.
	for _, proto := range []byte{1, 2, 47, 132, 255} {
		add(mangle(tp.Segment{Src: netip.AddrPortFrom(hostA4, 53), Dst: netip.AddrPortFrom(hostB4, 53), Flags: tp.FIN}.IPv4(),
			func(b []byte) { b[9] = proto }))
	}
	for _, proto := range []byte{58, 59, 132, 255} {
		add(mangle(tp.Segment{Src: netip.AddrPortFrom(hostA6, 53), Dst: netip.AddrPortFrom(hostB6, 53), Flags: tp.RST}.IPv6(),
			func(b []byte) { b[6] = proto }))
	}
	// Not IP: ARP, an 802.3 length, VLAN, MPLS; and IP under the wrong
	// EtherType.
	fin4 := tp.Ethernet(tp.Segment{Src: netip.AddrPortFrom(hostA4, 1), Dst: netip.AddrPortFrom(hostB4, 2), Flags: tp.FIN}.IPv4())
	fin6 := tp.Ethernet(tp.Segment{Src: netip.AddrPortFrom(hostA6, 1), Dst: netip.AddrPortFrom(hostB6, 2), Flags: tp.FIN}.IPv6())
	for _, et := range []uint16{0x0806, 0x0040, 0x8100, 0x8847, 0x86dd} {
		frames = append(frames, mangle(slices.Clone(fin4), func(b []byte) { binary.BigEndian.PutUint16(b[12:], et) }))
	}
	for _, et := range []uint16{0x0806, 0x05dc, 0x88a8, 0x0800} {
		frames = append(frames, mangle(slices.Clone(fin6), func(b []byte) { binary.BigEndian.PutUint16(b[12:], et) }))
	}
	return append(frames, tlsBaseFrames()...)
}

// ipv4Options returns n bytes of IPv4 options: NOPs, an end of list,
// timestamps, and options whose length byte lies.
func ipv4Options(rnd *rand.Rand, n int) []byte {
	opts := make([]byte, 0, n)
	for len(opts) < n {
		switch rnd.IntN(4) {
		case 0:
			opts = append(opts, 1) // NOP
		case 1:
			opts = append(opts, 0) // end of list
		case 2:
			opts = append(opts, 68, byte(rnd.IntN(256)), 5, 0) // a timestamp, any length
		default:
			opts = append(opts, byte(rnd.IntN(256)))
		}
	}
	return opts[:n]
}

// withIPv4Options puts options behind an IPv4 header and fixes its length
// fields (not its checksum, which the programs do not read).
func withIPv4Options(ip, opts []byte) []byte {
	out := append(append(slices.Clone(ip[:20]), opts...), ip[20:]...)
	out[0] = 0x40 | byte((20+len(opts))/4)
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	return out
}

// next returns the next frame.
func (g *frameGen) next() []byte {
	if len(g.queue) == 0 {
		g.refill()
	}
	f := g.queue[0]
	g.queue = g.queue[1:]
	return f
}

// refill queues the next section; after the systematic ones, batches of
// random mutations.
func (g *frameGen) refill() {
	defer func() { g.step++ }()
	rnd := g.rnd
	set := func(base []byte, f func([]byte)) []byte { b := slices.Clone(base); f(b); return b }
	v4 := tp.Ethernet(tp.Segment{Src: netip.AddrPortFrom(hostA4, 40000), Dst: netip.AddrPortFrom(hostB4, 53),
		Flags: tp.FIN | tp.PSH | tp.ACK, Payload: lyingDNS(rnd)[1]}.IPv4())
	v6 := tp.Ethernet(tp.Segment{Src: netip.AddrPortFrom(hostA6, 53), Dst: netip.AddrPortFrom(hostB6, 40000),
		Flags: tp.RST | tp.ACK, Payload: lyingDNS(rnd)[2]}.IPv6(tp.Ext{Type: tp.HopByHop}, tp.Ext{Type: tp.Fragment},
		tp.Ext{Type: tp.AuthHeader}))
	udp6 := tp.Ethernet(tp.Datagram{Src: netip.AddrPortFrom(hostA6, 53), Dst: netip.AddrPortFrom(hostB6, 40000),
		Payload: lyingDNS(rnd)[4]}.IPv6())
	const l3, v6tcp = 14, 14 + 40 + 8 + 8 + 16 // the IP header; the TCP header behind v6's extensions

	switch g.step {
	case 0:
		g.what = "base frames"
		g.queue = slices.Clone(g.bases)
	case 1:
		g.what = "truncated at every offset"
		for _, base := range append([][]byte{v4, v6, udp6}, g.bases[len(g.bases)-40:]...) {
			for n := 14; n < len(base); n++ {
				g.queue = append(g.queue, base[:n])
			}
		}
	case 2:
		g.what = "IPv4 version and header length"
		for b := range 256 {
			g.queue = append(g.queue, set(v4, func(f []byte) { f[l3] = byte(b) }))
		}
		// Header lengths below 5 words over bytes that would make a TCP
		// FIN or RST to port 53 at that offset.
		for words := range 5 {
			for _, flags := range []byte{thFIN, thRST, thFIN | thRST | tp.SYN} {
				g.queue = append(g.queue, set(v4, func(f []byte) {
					f[l3] = 0x40 | byte(words)
					th := f[l3+4*words:]
					th[2], th[3], th[12], th[13] = 0, 53, 0x50, flags
				}))
			}
		}
	case 3:
		g.what = "TCP data offset and flags"
		for b := range 256 {
			for flags := range 256 {
				base, off := v4, l3+20
				if flags%2 == 1 {
					base, off = v6, v6tcp
				}
				g.queue = append(g.queue, set(base, func(f []byte) { f[off+12], f[off+13] = byte(b), byte(flags) }))
			}
		}
	case 4:
		g.what = "IPv4 fragment fields and protocol"
		for b6 := range 256 {
			for _, b7 := range []byte{0, 1, 0x80, 0xff} {
				g.queue = append(g.queue, set(v4, func(f []byte) { f[l3+6], f[l3+7] = byte(b6), b7 }))
			}
			g.queue = append(g.queue, set(v4, func(f []byte) { f[l3+9] = byte(b6) }))
		}
	case 5:
		g.what = "IPv6 next headers and extension header lengths"
		for b := range 256 {
			g.queue = append(g.queue,
				set(v6, func(f []byte) { f[l3+6] = byte(b) }),    // the first next header
				set(v6, func(f []byte) { f[l3+40] = byte(b) }),   // the hop-by-hop header's next header
				set(v6, func(f []byte) { f[l3+41] = byte(b) }),   // its length
				set(v6, func(f []byte) { f[l3+48+2] = byte(b) }), // the fragment offset, high byte
				set(v6, func(f []byte) { f[l3+48+3] = byte(b) }), // low byte and M flag
				set(v6, func(f []byte) { f[l3+56+1] = byte(b) }), // the AH length
			)
		}
	case 6:
		g.what = "IPv6 extension header chains of 0 to 8 headers, any types"
		types := []byte{0, 43, 44, 51, 60, 59, 6, 17, 135, 139, 140, 253}
		for n := 0; n <= 8; n++ {
			for range 200 {
				g.queue = append(g.queue, randomChain(rnd, types, n))
			}
		}
	case 7:
		g.what = "length fields that lie"
		for range 2000 {
			lie := uint16(rnd.Uint32())
			g.queue = append(g.queue,
				set(v4, func(f []byte) { binary.BigEndian.PutUint16(f[l3+2:], lie) }),      // IPv4 total length
				set(v6, func(f []byte) { binary.BigEndian.PutUint16(f[l3+4:], lie) }),      // IPv6 payload length
				set(udp6, func(f []byte) { binary.BigEndian.PutUint16(f[l3+40+4:], lie) }), // UDP length
				set(v4, func(f []byte) { binary.BigEndian.PutUint16(f[l3+40:], lie) }),     // the DNS-over-TCP prefix
				set(udp6, func(f []byte) { binary.BigEndian.PutUint16(f[l3+48+4:], lie) }), // a DNS count
			)
		}
	case 8:
		g.what = "connections that start like TLS, and not"
		g.queue = tlsStreams(rnd, 1500)
	default:
		g.what = "random mutations"
		for range 1000 {
			g.queue = append(g.queue, mutate(rnd, slices.Clone(g.bases[rnd.IntN(len(g.bases))])))
		}
	}
}

// randomChain is a TCP FIN or a DNS datagram behind n extension headers of
// random types (known, unknown, upper-layer) and lengths, linked by their
// next-header fields, which sometimes skip or lie.
func randomChain(rnd *rand.Rand, types []byte, n int) []byte {
	l4 := tp.Segment{Src: netip.AddrPortFrom(hostA6, 40000), Dst: netip.AddrPortFrom(hostB6, 53), Flags: tp.FIN | tp.PSH,
		Payload: []byte("\x00\x04abcd")}.TCPHeader()
	last := byte(ipprotoTCP)
	if rnd.IntN(2) == 0 {
		l4 = tp.Datagram{Src: netip.AddrPortFrom(hostA6, 40000), Dst: netip.AddrPortFrom(hostB6, 53), Payload: []byte("abcd")}.UDPHeader()
		last = ipprotoUDP
	}
	kinds := make([]byte, n+1)
	for i := range n {
		kinds[i] = types[rnd.IntN(len(types))]
	}
	kinds[n] = last
	var chain []byte
	for i := range n {
		h := make([]byte, 8*(1+rnd.IntN(3)))
		for j := 2; j < len(h); j++ {
			h[j] = byte(rnd.IntN(256))
		}
		h[0] = kinds[i+1]
		h[1] = byte(len(h)/8 - 1)
		if kinds[i] == tp.AuthHeader {
			h[1] = byte(len(h)/4 - 2)
		}
		if rnd.IntN(4) == 0 {
			h[1] = byte(rnd.IntN(256)) // a length that lies
		}
		if rnd.IntN(8) == 0 {
			h[0] = types[rnd.IntN(len(types))] // a next header that lies
		}
		chain = append(chain, h...)
	}
	ip := tp.Segment{Src: netip.AddrPortFrom(hostA6, 1), Dst: netip.AddrPortFrom(hostB6, 1)}.IPv6()[:40]
	ip[6] = kinds[0]
	binary.BigEndian.PutUint16(ip[4:], uint16(len(chain)+len(l4)))
	return tp.Ethernet(append(append(ip, chain...), l4...))
}

// mutate applies one to four random mutations to a frame.
func mutate(rnd *rand.Rand, f []byte) []byte {
	for range 1 + rnd.IntN(4) {
		switch rnd.IntN(8) {
		case 0, 1: // flip a bit, most often in the headers
			limit := len(f)
			if rnd.IntN(4) > 0 {
				limit = min(limit, 80)
			}
			i := rnd.IntN(limit)
			f[i] ^= 1 << rnd.IntN(8)
		case 2: // set a byte
			if len(f) > 14 {
				f[14+rnd.IntN(len(f)-14)] = byte(rnd.Uint32())
			}
		case 3: // truncate
			f = f[:14+rnd.IntN(len(f)-13)]
		case 4: // append noise
			for range rnd.IntN(64) {
				f = append(f, byte(rnd.Uint32()))
			}
		case 5: // insert or remove a few bytes inside the headers
			i := 14 + rnd.IntN(min(len(f), 100)-13)
			if rnd.IntN(2) == 0 && i+4 <= len(f) {
				f = append(f[:i], f[i+rnd.IntN(5):]...)
			} else {
				f = append(f[:i], append(make([]byte, 1+rnd.IntN(8)), f[i:]...)...)
			}
		case 6: // port 53 on either side
			if len(f) > 14+60 {
				off := 14 + 20
				if f[14]>>4 == 6 {
					off = 14 + 40
				}
				side := 2 * rnd.IntN(2)
				f[off+side], f[off+side+1] = 0, 53
			}
		case 7: // the other IP version's EtherType
			if binary.BigEndian.Uint16(f[12:]) == 0x0800 {
				binary.BigEndian.PutUint16(f[12:], 0x86dd)
			} else {
				binary.BigEndian.PutUint16(f[12:], 0x0800)
			}
		}
	}
	return f
}

// FuzzPrograms runs both programs on arbitrary frames with the checks of
// TestTestRunHostileFrames. The seeds are the generator's base frames and a
// few frames of each of its sections. The fuzzer's coverage guidance sees
// the Go side only, i.e. the branches of expect, which are the programs'
// parse decisions. make test fuzzes for FUZZTIME, make fuzz longer.
func FuzzPrograms(f *testing.F) {
	r := newHostileRun(f)
	g := newFrameGen(2)
	for _, b := range g.bases {
		f.Add(b)
	}
	seeded := map[string]int{}
	for g.step < 11 {
		frame := g.next()
		if seeded[g.what] < 8 {
			f.Add(frame)
			seeded[g.what]++
		}
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if err := r.check(frame); err != nil {
			t.Fatalf("frame %x: %v", frame, err)
		}
	})
}
