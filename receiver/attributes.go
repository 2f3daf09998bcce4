package receiver

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Attribute keys (the README's record table). Semantic-convention keys come
// from the semconv package; the netflow.* ones have no convention.
const (
	AttrDirection          = "netflow.direction"
	AttrSourceAddress      = string(semconv.SourceAddressKey)
	AttrSourcePort         = string(semconv.SourcePortKey)
	AttrDestinationAddress = string(semconv.DestinationAddressKey)
	AttrDestinationPort    = string(semconv.DestinationPortKey)
	AttrSourceDomains      = "netflow.source.domains"
	AttrDestinationDomains = "netflow.destination.domains"
	AttrNetworkTransport   = string(semconv.NetworkTransportKey)
	AttrNetworkType        = string(semconv.NetworkTypeKey)
	AttrLocalAddress       = string(semconv.NetworkLocalAddressKey)
	AttrLocalPort          = string(semconv.NetworkLocalPortKey)
	AttrPeerAddress        = string(semconv.NetworkPeerAddressKey)
	AttrPeerPort           = string(semconv.NetworkPeerPortKey)
	AttrClientAddress      = string(semconv.ClientAddressKey)
	AttrClientPort         = string(semconv.ClientPortKey)
	AttrServerAddress      = string(semconv.ServerAddressKey)
	AttrServerPort         = string(semconv.ServerPortKey)
	AttrEndReason          = "netflow.end.reason"
	AttrEndBy              = "netflow.end.by"
	AttrEndError           = "netflow.end.error"
	AttrErrorType          = string(semconv.ErrorTypeKey)
	AttrEstablished        = "netflow.established"
	AttrStartObserved      = "netflow.start_observed"
	AttrStartTime          = "netflow.start_time_unix_nano"
	AttrDuration           = "netflow.duration"
	AttrProcessPID         = string(semconv.ProcessPIDKey)
	AttrProcessExecutable  = string(semconv.ProcessExecutableNameKey)
	AttrBytesSent          = "netflow.bytes.sent"
	AttrBytesReceived      = "netflow.bytes.received"
	AttrSegmentsSent       = "netflow.segments.sent"
	AttrSegmentsReceived   = "netflow.segments.received"
	AttrRTT                = "netflow.tcp.rtt"
	AttrRetransmissions    = "netflow.tcp.retransmissions"
	AttrSocketCookie       = "netflow.socket.cookie"
	AttrCgroupID           = "netflow.cgroup.id"
	AttrNetns              = "netflow.netns"
	AttrTLSServerName      = "netflow.tls.server_name"
	AttrPeerName           = "netflow.peer.name"
)

// attribute is one attribute a record can carry, in the order records
// carry them.
type attribute uint8

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

var attributeKeys = [numAttributes]string{
	attrDirection: AttrDirection, attrSourceAddress: AttrSourceAddress, attrSourcePort: AttrSourcePort,
	attrDestinationAddress: AttrDestinationAddress, attrDestinationPort: AttrDestinationPort,
	attrSourceDomains: AttrSourceDomains, attrDestinationDomains: AttrDestinationDomains,
	attrNetworkTransport: AttrNetworkTransport, attrNetworkType: AttrNetworkType,
	attrLocalAddress: AttrLocalAddress, attrLocalPort: AttrLocalPort,
	attrPeerAddress: AttrPeerAddress, attrPeerPort: AttrPeerPort,
	attrClientAddress: AttrClientAddress, attrClientPort: AttrClientPort,
	attrServerAddress: AttrServerAddress, attrServerPort: AttrServerPort,
	attrEndReason: AttrEndReason, attrEndBy: AttrEndBy, attrEndError: AttrEndError, attrErrorType: AttrErrorType,
	attrEstablished: AttrEstablished, attrStartObserved: AttrStartObserved,
	attrStartTime: AttrStartTime, attrDuration: AttrDuration,
	attrProcessPID: AttrProcessPID, attrProcessExecutable: AttrProcessExecutable,
	attrBytesSent: AttrBytesSent, attrBytesReceived: AttrBytesReceived,
	attrSegmentsSent: AttrSegmentsSent, attrSegmentsReceived: AttrSegmentsReceived,
	attrRTT: AttrRTT, attrRetransmissions: AttrRetransmissions,
	attrSocketCookie: AttrSocketCookie, attrCgroupID: AttrCgroupID, attrNetns: AttrNetns,
	attrTLSServerName: AttrTLSServerName, attrPeerName: AttrPeerName,
}

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
