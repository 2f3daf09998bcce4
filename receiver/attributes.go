package receiver

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// attribute is one attribute a record can carry: its bit in an
// attributeSet, and its index in attributeKeys.
type attribute uint8

// The attributes, in the order records carry them. To add one: a constant
// here, its key in attributeKeys, the line in converter.append that sets
// it, and its row in the README's record table.
const (
	attrDirection attribute = iota
	attrSourceAddress
	attrSourcePort
	attrDestinationAddress
	attrDestinationPort
	attrSourceDomains
	attrDestinationDomains
	attrNetworkTransport
	attrNetworkType
	attrLocalAddress
	attrLocalPort
	attrPeerAddress
	attrPeerPort
	attrClientAddress
	attrClientPort
	attrServerAddress
	attrServerPort
	attrLocalTranslatedAddress
	attrLocalTranslatedPort
	attrPeerTranslatedAddress
	attrPeerTranslatedPort
	attrEndReason
	attrEndBy
	attrEndError
	attrErrorType
	attrEstablished
	attrStartObserved
	attrStartTime
	attrDuration
	attrProcessPID
	attrProcessExecutable
	attrBytesSent
	attrBytesReceived
	attrSegmentsSent
	attrSegmentsReceived
	attrRTT
	attrRetransmissions
	attrSocketCookie
	attrCgroupID
	attrNetns
	attrTLSServerName
	attrPeerName

	// numAttributes is the most attributes one record carries, so that a
	// record's attribute map is allocated once.
	numAttributes
)

// attributeKeys are the attributes' keys (the README's record table).
// Semantic-convention keys come from the semconv package; the netflow.*
// ones have no convention.
var attributeKeys = [numAttributes]string{
	attrDirection:          "netflow.direction",
	attrSourceAddress:      string(semconv.SourceAddressKey),
	attrSourcePort:         string(semconv.SourcePortKey),
	attrDestinationAddress: string(semconv.DestinationAddressKey),
	attrDestinationPort:    string(semconv.DestinationPortKey),
	attrSourceDomains:      "netflow.source.domains",
	attrDestinationDomains: "netflow.destination.domains",
	attrNetworkTransport:   string(semconv.NetworkTransportKey),
	attrNetworkType:        string(semconv.NetworkTypeKey),
	attrLocalAddress:       string(semconv.NetworkLocalAddressKey),
	attrLocalPort:          string(semconv.NetworkLocalPortKey),
	attrPeerAddress:        string(semconv.NetworkPeerAddressKey),
	attrPeerPort:           string(semconv.NetworkPeerPortKey),
	attrClientAddress:      string(semconv.ClientAddressKey),
	attrClientPort:         string(semconv.ClientPortKey),
	attrServerAddress:      string(semconv.ServerAddressKey),
	attrServerPort:         string(semconv.ServerPortKey),
	// What NAT made of the connection (docs/nat.md): this socket as its
	// peer sees it, and the peer as the packets reach it.
	attrLocalTranslatedAddress: "netflow.local.translated.address",
	attrLocalTranslatedPort:    "netflow.local.translated.port",
	attrPeerTranslatedAddress:  "netflow.peer.translated.address",
	attrPeerTranslatedPort:     "netflow.peer.translated.port",
	attrEndReason:              "netflow.end.reason",
	attrEndBy:                  "netflow.end.by",
	attrEndError:               "netflow.end.error",
	attrErrorType:              string(semconv.ErrorTypeKey),
	attrEstablished:            "netflow.established",
	attrStartObserved:          "netflow.start_observed",
	attrStartTime:              "netflow.start_time_unix_nano",
	attrDuration:               "netflow.duration",
	attrProcessPID:             string(semconv.ProcessPIDKey),
	attrProcessExecutable:      string(semconv.ProcessExecutableNameKey),
	attrBytesSent:              "netflow.bytes.sent",
	attrBytesReceived:          "netflow.bytes.received",
	attrSegmentsSent:           "netflow.segments.sent",
	attrSegmentsReceived:       "netflow.segments.received",
	attrRTT:                    "netflow.tcp.rtt",
	attrRetransmissions:        "netflow.tcp.retransmissions",
	attrSocketCookie:           "netflow.socket.cookie",
	attrCgroupID:               "netflow.cgroup.id",
	attrNetns:                  "netflow.netns",
	attrTLSServerName:          "netflow.tls.server_name",
	attrPeerName:               "netflow.peer.name",
}

// String returns the attribute's key.
func (a attribute) String() string { return attributeKeys[a] }

// coreAttributes are the fields of the event this receiver reimplements
// (Tracee's NetFlowTCPEnd): every record has them, whatever the
// configuration says.
var coreAttributes = []attribute{
	attrDirection, attrSourceAddress, attrSourcePort, attrDestinationAddress, attrDestinationPort,
	attrSourceDomains, attrDestinationDomains,
}

// attributeSet is a set of attributes, one bit each.
type attributeSet uint64

// allAttributes is every attribute: the default.
const allAttributes = attributeSet(1)<<numAttributes - 1

func (s attributeSet) has(a attribute) bool { return s&(1<<a) != 0 }

// count is how many attributes s holds.
func (s attributeSet) count() int { return bits.OnesCount64(uint64(s)) }

// attributeByKey returns the attribute whose key is key.
func attributeByKey(key string) (attribute, bool) {
	i := slices.Index(attributeKeys[:], key)
	return attribute(i), i >= 0
}

// AttributesConfig chooses the optional attributes of records.
type AttributesConfig struct {
	// Exclude lists attribute keys that records leave out, to save their
	// cost per record (make bench measures it). The event's own fields
	// (direction, source and destination address, port and domains) cannot
	// be left out.
	Exclude []string `mapstructure:"exclude"`

	// prevent unkeyed literal initialization
	_ struct{}
}

func (c AttributesConfig) validate() []error {
	var errs []error
	for _, key := range c.Exclude {
		a, ok := attributeByKey(key)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("attributes.exclude: %q is not an attribute of this receiver; the attributes are: %s",
				key, strings.Join(optionalAttributeKeys(), ", ")))
		case slices.Contains(coreAttributes, a):
			errs = append(errs, fmt.Errorf("attributes.exclude: %q is a field of the event itself and cannot be left out", key))
		}
	}
	return errs
}

// set returns the attributes that records carry.
func (c AttributesConfig) set() attributeSet {
	s := allAttributes
	for _, key := range c.Exclude {
		if a, ok := attributeByKey(key); ok && !slices.Contains(coreAttributes, a) {
			s &^= 1 << a
		}
	}
	return s
}

func optionalAttributeKeys() []string {
	var keys []string
	for a, key := range attributeKeys {
		if !slices.Contains(coreAttributes, attribute(a)) {
			keys = append(keys, key)
		}
	}
	return keys
}
