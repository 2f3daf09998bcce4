package bpf

import "fmt"

// This file and limits.go build on every OS: the receiver's configuration,
// which the collector validates everywhere, uses them.

// Direction is the local socket's role in its connection. The values are
// those of the programs' enum direction (netflow.h; a test checks them),
// so a record's direction needs no conversion.
type Direction uint8

// Directions, as the README defines them.
const (
	DirectionUnknown  Direction = 0 // the handshake was not observed (see the README)
	DirectionIncoming Direction = 1 // accepted from a listener
	DirectionOutgoing Direction = 2 // the socket sent the SYN
)

var directionNames = [...]string{DirectionUnknown: "unknown", DirectionIncoming: "incoming", DirectionOutgoing: "outgoing"}

func (d Direction) String() string {
	if int(d) < len(directionNames) {
		return directionNames[d]
	}
	return "unknown"
}

// UnmarshalText accepts incoming, outgoing and unknown (the configuration's
// filters).
func (d *Direction) UnmarshalText(text []byte) error {
	for i, name := range directionNames {
		if string(text) == name {
			*d = Direction(i)
			return nil
		}
	}
	return fmt.Errorf("%q is not incoming, outgoing or unknown", text)
}

// MarshalText writes the name UnmarshalText reads.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
