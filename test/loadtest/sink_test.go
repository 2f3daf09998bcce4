//go:build linux

package loadtest

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

// request is an OTLP/HTTP body with one record per cookie, at time ts.
func request(t *testing.T, ts pcommon.Timestamp, cookies ...uint64) []byte {
	t.Helper()
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for _, c := range cookies {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(ts)
		lr.Attributes().PutInt("netflow.socket.cookie", int64(c))
	}
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	require.NoError(t, err)
	return body
}

func TestSinkTellsAResentRequestFromARecordTwice(t *testing.T) {
	sink, err := NewSink()
	require.NoError(t, err)
	t.Cleanup(func() { sink.Close() })
	post := func(body []byte) {
		resp, err := http.Post("http://"+sink.Addr()+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	made := map[uint64]struct{}{1: {}, 2: {}, 3: {}}

	post(request(t, 100, 1, 2))
	post(request(t, 100, 1, 2)) // the exporter's retry: the same request
	assert.Equal(t, Accounting{Sockets: 3, Delivered: 2, Missing: 1, Resent: 2}, sink.Account(made))

	// The same records in another order, or one of them in another
	// request, are records twice: the receiver emitted them again.
	post(request(t, 100, 2, 1))
	post(request(t, 200, 3))
	post(request(t, 300, 3))
	assert.Equal(t, Accounting{Sockets: 3, Delivered: 3, Duplicates: 3, Resent: 2}, sink.Account(made))
	assert.Equal(t, int64(6), sink.Records()) // the resent request not among them
}
