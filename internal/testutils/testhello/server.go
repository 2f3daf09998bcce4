package testhello

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Cert is a self-signed certificate made for a test, for Go servers and as
// PEM files for openssl s_server.
type Cert struct {
	TLS               tls.Certificate
	CertFile, KeyFile string
}

// NewCert makes a self-signed ECDSA certificate for names (DNS names or IP
// addresses), valid for an hour, with its PEM files in a test directory.
func NewCert(t testing.TB, names ...string) Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	c := Cert{
		TLS:      tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"),
	}
	require.NoError(t, os.WriteFile(c.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(c.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	return c
}

// SplitConn writes its first Write (a TLS client's ClientHello) in Pieces
// writes of about equal size, a millisecond apart, with Nagle's algorithm
// off: each becomes its own TCP segment, as a client that writes its
// ClientHello in parts makes them.
type SplitConn struct {
	*net.TCPConn
	Pieces int
	wrote  bool
}

func (c *SplitConn) Write(b []byte) (int, error) {
	if c.wrote || c.Pieces < 2 {
		return c.TCPConn.Write(b)
	}
	c.wrote = true
	if err := c.SetNoDelay(true); err != nil {
		return 0, err
	}
	n := 0
	size := (len(b) + c.Pieces - 1) / c.Pieces
	for n < len(b) {
		m, err := c.TCPConn.Write(b[n:min(n+size, len(b))])
		n += m
		if err != nil {
			return n, err
		}
		time.Sleep(time.Millisecond)
	}
	return n, nil
}

// Serve runs a crypto/tls server with cert on ln until ln is closed: each
// connection's handshake, then whatever the client sends is echoed until
// it closes. onAccept, if not nil, gets each accepted connection first.
func Serve(ln net.Listener, cert Cert, onAccept func(*net.TCPConn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if onAccept != nil {
			onAccept(c.(*net.TCPConn))
		}
		go func() {
			defer c.Close()
			s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert.TLS}})
			_ = s.SetDeadline(time.Now().Add(5 * time.Second))
			if s.Handshake() == nil {
				_, _ = io.Copy(s, s)
			}
		}()
	}
}
