package bpf

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Direction's values are the programs' enum direction (netflow.h), which
// bpf2go generates.
func TestDirectionsAreTheProgramsOwn(t *testing.T) {
	assert.EqualValues(t, netflowDirectionDIRECTION_UNKNOWN, DirectionUnknown)
	assert.EqualValues(t, netflowDirectionDIRECTION_INCOMING, DirectionIncoming)
	assert.EqualValues(t, netflowDirectionDIRECTION_OUTGOING, DirectionOutgoing)
}
