package netflowtcpend

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
)

// Configurations written for the first type name keep working.
func TestTypeAndDeprecatedAlias(t *testing.T) {
	f := NewFactory()
	assert.Equal(t, "netflow_tcp_end", f.Type().String())

	// What the collector's factory map reads to list the alias.
	alias, ok := f.(interface{ DeprecatedAlias() component.Type })
	require.True(t, ok, "the factory carries a deprecated alias")
	assert.Equal(t, "netflowtcpend", alias.DeprecatedAlias().String())

	for _, name := range []string{"netflow_tcp_end", "netflowtcpend"} {
		typ := component.MustNewType(name)
		set := receivertest.NewNopSettings(metadata.Type)
		set.ID = component.NewIDWithName(typ, "x")
		rcv, err := f.CreateLogs(context.Background(), set, f.CreateDefaultConfig(), consumertest.NewNop())
		require.NoError(t, err, "create with type %q", name)
		require.NoError(t, rcv.Shutdown(context.Background()))
	}

	set := receivertest.NewNopSettings(metadata.Type)
	set.ID = component.NewID(component.MustNewType("netflow"))
	_, err := f.CreateLogs(context.Background(), set, f.CreateDefaultConfig(), consumertest.NewNop())
	assert.ErrorContains(t, err, `or deprecated alias type "netflowtcpend"`)
}
