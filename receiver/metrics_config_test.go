//go:build linux

package receiver

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netflowtcpend/netflowtcpend/internal/connmetrics"
)

// The metrics' point attributes are the records' attributes of the same
// name, so that a query can move from one to the other.
func TestMetricAttributesAreRecordAttributes(t *testing.T) {
	assert.Equal(t, connmetrics.AttrDirection, attrDirection.String())
	assert.Equal(t, connmetrics.AttrEndReason, attrEndReason.String())
	assert.Equal(t, connmetrics.AttrErrorType, attrErrorType.String())
	assert.Equal(t, connmetrics.AttrServerPort, attrServerPort.String())
	assert.Equal(t, connmetrics.AttrNetworkType, attrNetworkType.String())
	assert.Equal(t, AttrHostName, connmetrics.AttrHostName)
	assert.Equal(t, AttrContainerID, connmetrics.AttrContainerID)
	for _, key := range connmetrics.DefaultAttributes {
		_, ok := attributeByKey(key)
		assert.True(t, ok, "%s is a record attribute", key)
	}
}

func TestDefaultMetricsConfigIsValid(t *testing.T) {
	c := defaultMetricsConfig()
	require.Empty(t, c.validate(nil))
	assert.Equal(t, connmetrics.Cumulative, c.Temporality)
	assert.Empty(t, c.Attributes, "further attributes are opt-in")
	s := c.settings("node", "scope")
	assert.Equal(t, 32, s.IPv4Prefix)
	assert.Equal(t, 128, s.IPv6Prefix)
	assert.Equal(t, 2000, s.MaxSeries)
}
