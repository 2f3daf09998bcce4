package bpf

// Limits that the receiver's configuration (ring_buffer_size,
// dns.payload_limit, tls.enabled) shares with the loader.

// DefaultRingBufferSize is the ring buffer size used when Options leaves it
// zero, and the default ring_buffer_size: room for about 36,000
// connection-end records of 224 bytes.
const DefaultRingBufferSize = 8 << 20

// MaxDNSPayload is the largest Options.DNSPayloadLimit and
// dns.payload_limit: DNS_PAYLOAD_MAX (maps.h), the size of the programs'
// per-CPU scratch buffer for a DNS message.
const MaxDNSPayload = 8192

// MaxTLSHello is the largest Options.TLSHelloLimit, which tls.enabled
// sets: TLS_HELLO_MAX (maps.h), the size of the programs' per-CPU scratch
// buffer for a piece of a ClientHello, and the most bytes of a
// connection's start they copy.
const MaxTLSHello = 8192
