//go:build linux

package receiver

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testhello"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
)

// Real TLS clients (Go's crypto/tls, curl, openssl s_client) against real
// TLS servers (crypto/tls, openssl s_server) with certificates made here,
// all in the test cgroup, no DNS anywhere (curl --resolve): both sockets'
// records carry the server name the client sent, and connections without
// one carry none.

// tlsSide is what a record of a test connection says about TLS.
type tlsSide struct {
	serverName, peerName string // "": absent
	netType              string
}

// tlsSides returns the TLS attributes of the records of connections to
// port: the clients' (outgoing) and the servers' (incoming).
func (h *harness) tlsSides(port int) (clients, servers []tlsSide) {
	h.eachRecord(func(_ pcommon.Resource, lr plog.LogRecord) {
		a := lr.Attributes().AsRaw()
		str := func(k string) string { s, _ := a[k].(string); return s }
		if p, _ := a[attrServerPort.String()].(int64); int(p) != port {
			return
		}
		side := tlsSide{serverName: str(attrTLSServerName.String()), peerName: str(attrPeerName.String()), netType: str(attrNetworkType.String())}
		if str(attrDirection.String()) == "outgoing" {
			clients = append(clients, side)
		} else {
			servers = append(servers, side)
		}
	})
	return clients, servers
}

// need returns the path of a program the tests need; make test installs it.
func need(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("%s is missing; make test installs it (Debian package %s)", name, pkg)
		}
		t.Skipf("skipping: %s is not installed (make test installs %s)", name, pkg)
	}
	return p
}

// goServer is a crypto/tls server in the cgroup on addr, echoing what
// each client sends. It returns its port.
func goServer(t *testing.T, h *harness, addr netip.AddrPort, cert testhello.Cert) int {
	t.Helper()
	var ln *net.TCPListener
	h.cg.Run(t, func() {
		var err error
		ln, err = testnet.Listen(addr)
		require.NoError(t, err)
	})
	t.Cleanup(func() { ln.Close() })
	go testhello.Serve(ln, cert, nil)
	return ln.Addr().(*net.TCPAddr).Port
}

// opensslServer is openssl s_server in the cgroup on a free port of host
// ("127.0.0.1" or "::1"), answering HTTP with a status page (-www). It
// returns the port.
func opensslServer(t *testing.T, h *harness, host string, cert testhello.Cert, args ...string) int {
	t.Helper()
	bin := need(t, "openssl", "openssl")
	port := int(freePort(t, nil, netip.MustParseAddr(host)))
	cmd := exec.Command(bin, append([]string{"s_server", "-accept", net.JoinHostPort(host, strconv.Itoa(port)),
		"-cert", cert.CertFile, "-key", cert.KeyFile, "-www"}, args...)...)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	h.cg.Run(t, func() { require.NoError(t, cmd.Start()) })
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// It says ACCEPT once it listens.
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ACCEPT") && !ok {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		require.True(t, ok, "openssl s_server did not start: %s", &stderr)
	case <-time.After(10 * time.Second):
		t.Fatalf("openssl s_server did not start: %s", &stderr)
	}
	return port
}

// inCgroup runs a client program in the cgroup and waits for it.
func inCgroup(t *testing.T, h *harness, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Stdin = strings.NewReader("")
	h.cg.Run(t, func() { require.NoError(t, cmd.Start()) })
	require.NoError(t, cmd.Wait(), "%s %s: %s", name, strings.Join(args, " "), &out)
	return out.String()
}

// goClient makes one crypto/tls connection to addr from the cgroup,
// sending serverName, with its ClientHello written in pieces parts.
func goClient(t *testing.T, h *harness, addr netip.AddrPort, serverName string, pieces int, cfg *tls.Config) {
	t.Helper()
	raw := h.cg.Dial(t, addr)
	defer raw.Close()
	c := cfg.Clone()
	c.ServerName, c.InsecureSkipVerify = serverName, true
	conn := tls.Client(&testhello.SplitConn{TCPConn: raw, Pieces: pieces}, c)
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	require.NoError(t, conn.Handshake())
	_, err := io.WriteString(conn, "hello\n")
	require.NoError(t, err)
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "hello\n", line)
	require.NoError(t, conn.Close())
}

// rawClient writes stream from the cgroup to addr in pieces parts, reads
// what comes back until the server closes or a second passes, and closes.
func rawClient(t *testing.T, h *harness, addr netip.AddrPort, stream []byte, pieces int) {
	t.Helper()
	raw := h.cg.Dial(t, addr)
	defer raw.Close()
	_, err := (&testhello.SplitConn{TCPConn: raw, Pieces: pieces}).Write(stream)
	require.NoError(t, err)
	_ = raw.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, raw)
}

func TestTLSServerNameFromRealClients(t *testing.T) {
	curl := need(t, "curl", "curl")
	openssl := need(t, "openssl", "openssl")
	h := newHarness(t)
	h.startWith(Config{RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond,
		TLS: TLSConfig{Enabled: true}})
	if !h.features.TLSServerNames {
		t.Skip("skipping: this kernel's object has no TLS code (before Linux 6.4); bpf's TestTLSUnavailable covers it")
	}
	cert := testhello.NewCert(t, "www.example.com", "127.0.0.1", "::1")
	loop4, loop6 := netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	tls12 := &tls.Config{MaxVersion: tls.VersionTLS12}
	tls13 := &tls.Config{MinVersion: tls.VersionTLS13}
	// SNI in the last of three segments: a ClientHello as browsers make
	// them (post-quantum key share, extensions in another order).
	late := testhello.Hello{ServerName: "late.example.com", KeyShareLen: 1216, Padding: 200, ServerNameLast: true}.Bytes()

	// A case's connection: a server (crypto/tls or openssl s_server)
	// listening on an address, and a client that reaches it on one.
	type server func(t *testing.T, listen netip.Addr) int
	goSrv := func(t *testing.T, listen netip.Addr) int {
		t.Helper()
		return goServer(t, h, netip.AddrPortFrom(listen, 0), cert)
	}
	sslSrv := func(t *testing.T, listen netip.Addr) int {
		t.Helper()
		return opensslServer(t, h, listen.String(), cert)
	}
	goTLS := func(srv server, listen, dial netip.Addr, name string, pieces int, cfg *tls.Config) func(*testing.T) int {
		return func(t *testing.T) int {
			t.Helper()
			port := srv(t, listen)
			goClient(t, h, netip.AddrPortFrom(dial, uint16(port)), name, pieces, cfg)
			return port
		}
	}
	raw := func(srv server, addr netip.Addr, stream []byte, pieces int) func(*testing.T) int {
		return func(t *testing.T) int {
			t.Helper()
			port := srv(t, addr)
			rawClient(t, h, netip.AddrPortFrom(addr, uint16(port)), stream, pieces)
			return port
		}
	}
	program := func(srv server, addr netip.Addr, bin string, args func(port int) []string) func(*testing.T) int {
		return func(t *testing.T) int {
			t.Helper()
			port := srv(t, addr)
			inCgroup(t, h, bin, args(port)...)
			return port
		}
	}
	curlTo := func(name, addr string, version ...string) func(port int) []string {
		return func(port int) []string {
			return append(append([]string{"-sSk", "-o", "/dev/null"}, version...),
				"--resolve", fmt.Sprintf("%s:%d:%s", name, port, addr), fmt.Sprintf("https://%s:%d/", name, port))
		}
	}
	sClient := func(host string, opts ...string) func(port int) []string {
		return func(port int) []string {
			return append([]string{"s_client", "-connect", net.JoinHostPort(host, strconv.Itoa(port)), "-brief"}, opts...)
		}
	}
	lying := testhello.Hello{ServerName: "lie.example.com"}.Bytes()
	lying[bytes.Index(lying, []byte("lie.example.com"))-2] = 0xff // the host name's length, past its list
	long := strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("e", 63)

	cases := []struct {
		name    string
		run     func(t *testing.T) int // makes the connection; returns the server's port
		want    string                 // the server name on both records; "": none
		netType string
	}{
		{"crypto/tls to crypto/tls, TLS 1.3, IPv4", goTLS(goSrv, loop4, loop4, "go13.example.com", 1, tls13), "go13.example.com", "ipv4"},
		{"crypto/tls to crypto/tls, TLS 1.2, IPv6", goTLS(goSrv, loop6, loop6, "go12.example.com", 1, tls12), "go12.example.com", "ipv6"},
		{"crypto/tls, ClientHello in three segments", goTLS(goSrv, loop4, loop4, "split.example.com", 3, &tls.Config{}),
			"split.example.com", "ipv4"},
		{"IPv4 to a dual-stack listener", goTLS(goSrv, netip.IPv6Unspecified(), loop4, "dual.example.com", 1, &tls.Config{}),
			"dual.example.com", "ipv4"},
		{"curl --resolve, TLS 1.3, IPv4", program(sslSrv, loop4, curl, curlTo("curl13.example.com", "127.0.0.1", "--tlsv1.3")),
			"curl13.example.com", "ipv4"},
		{"curl --resolve, TLS 1.2, IPv6", program(sslSrv, loop6, curl, curlTo("curl12.example.com", "[::1]", "--tlsv1.2", "--tls-max", "1.2")),
			"curl12.example.com", "ipv6"},
		{"openssl s_client -servername, TLS 1.3, IPv6", program(goSrv, loop6, openssl, sClient("::1", "-servername", "sclient13.example.com", "-tls1_3")),
			"sclient13.example.com", "ipv6"},
		{"openssl s_client -servername, TLS 1.2, IPv4, to s_server",
			program(sslSrv, loop4, openssl, sClient("127.0.0.1", "-servername", "sclient12.example.com", "-tls1_2")), "sclient12.example.com", "ipv4"},
		{"a browser-like ClientHello, the name in the third segment, to s_server", raw(sslSrv, loop4, late, 3), "late.example.com", "ipv4"},
		{"a name of 255 bytes", raw(goSrv, loop4, testhello.Hello{ServerName: long}.Bytes(), 1), long, "ipv4"},

		// Negatives: no name, and no error.
		{"crypto/tls to an IP address: no SNI", goTLS(goSrv, loop4, loop4, "127.0.0.1", 1, &tls.Config{}), "", "ipv4"},
		{"openssl s_client -noservername", program(sslSrv, loop4, openssl, sClient("127.0.0.1", "-noservername")), "", "ipv4"},
		{"plaintext HTTP to s_server", raw(sslSrv, loop4, []byte("GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n"), 1), "", "ipv4"},
		{"garbage that starts like TLS", raw(goSrv, loop4, append([]byte{22, 3, 1, 0, 200, 1, 0, 0, 196}, bytes.Repeat([]byte{0xff}, 200)...), 1),
			"", "ipv4"},
		{"extension lengths that lie", raw(goSrv, loop6, lying, 1), "", "ipv6"},
		{"a truncated ClientHello", raw(goSrv, loop4, late[:700], 2), "", "ipv4"},
		{"a name of 256 bytes", raw(goSrv, loop4, testhello.Hello{ServerName: strings.Repeat("a", 256)}.Bytes(), 1), "", "ipv4"},
	}

	ports := map[string]int{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { ports[c.name] = c.run(t) })
	}
	time.Sleep(200 * time.Millisecond) // the servers' ends
	h.stop()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			port, ok := ports[c.name]
			require.True(t, ok, "the connection was not made")
			clients, servers := h.tlsSides(port)
			require.NotEmpty(t, clients, "the client's record")
			require.NotEmpty(t, servers, "the server's record")
			for _, s := range clients {
				assert.Equal(t, c.want, s.serverName, "client")
				// The client sent the name: it is its peer's.
				assert.Equal(t, c.want, s.peerName, "client's peer name")
				assert.Equal(t, c.netType, s.netType)
			}
			for _, s := range servers {
				assert.Equal(t, c.want, s.serverName, "server")
				assert.Empty(t, s.peerName, "the name is the server's own, not its peer's")
			}
		})
	}
}

// TCP Fast Open: the second connection carries the ClientHello in its SYN,
// which the listener sees before the accepted socket exists; both records
// still carry the name.
func TestTLSServerNameWithFastOpen(t *testing.T) {
	h := newHarness(t)
	h.startWith(Config{RingBufferSize: 1 << 20, MaxBatchSize: 64, FlushInterval: 20 * time.Millisecond,
		TLS: TLSConfig{Enabled: true}})
	if !h.features.TLSServerNames {
		t.Skip("skipping: this kernel's object has no TLS code (before Linux 6.4); bpf's TestTLSUnavailable covers it")
	}
	ns := testnet.NewNetns(t)
	require.NoError(t, ns.EnableFastOpen())
	cert := testhello.NewCert(t, "tfo.example.com")
	var ln net.Listener
	h.cg.Run(t, func() {
		require.NoError(t, ns.Do(func() (err error) {
			ln, err = testnet.FastOpenListenConfig().Listen(t.Context(), "tcp4", "127.0.0.1:0")
			return err
		}))
	})
	t.Cleanup(func() { ln.Close() })
	go testhello.Serve(ln, cert, nil)
	// synData says whether the server took the data in the SYN.
	synData := func(conn net.Conn) bool {
		info, err := testnet.TCPInfo(conn.(*net.TCPConn))
		require.NoError(t, err)
		const tcpiOptSYNData = 0x20 // TCPI_OPT_SYN_DATA
		return info.Options&tcpiOptSYNData != 0
	}
	dial := func(name string) bool {
		var conn net.Conn
		h.cg.Run(t, func() {
			require.NoError(t, ns.Do(func() (err error) {
				conn, err = testnet.FastOpenDialer().Dial("tcp4", ln.Addr().String())
				return err
			}))
		})
		c := tls.Client(conn, &tls.Config{ServerName: name, InsecureSkipVerify: true})
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		require.NoError(t, c.Handshake())
		inSYN := synData(conn)
		require.NoError(t, c.Close())
		return inSYN
	}
	require.False(t, dial("first.example.com"), "the first connection fetches the Fast Open cookie")
	require.True(t, dial("tfo.example.com"), "the second one's ClientHello rides in the SYN")
	time.Sleep(100 * time.Millisecond)
	h.stop()
	clients, servers := h.tlsSides(ln.Addr().(*net.TCPAddr).Port)
	var got []string
	for _, s := range append(clients, servers...) {
		got = append(got, s.serverName)
	}
	assert.ElementsMatch(t, []string{"first.example.com", "first.example.com", "tfo.example.com", "tfo.example.com"}, got)
}
