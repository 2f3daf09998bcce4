// Package otlpsink is an OTLP/HTTP endpoint for tests and benchmarks: what
// an OTLP backend would receive from the collector, logs (POST /v1/logs)
// and metrics (POST /v1/metrics).
package otlpsink

import (
	"compress/gzip"
	"io"
	"net/http"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// Handler serves POST /v1/logs (protobuf, gzip or not) and passes each
// request's logs to consume.
func Handler(consume func(plog.Logs)) http.Handler {
	return handler("/v1/logs", func(raw []byte) ([]byte, error) {
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(raw); err != nil {
			return nil, err
		}
		consume(req.Logs())
		return plogotlp.NewExportResponse().MarshalProto()
	})
}

// MetricsHandler serves POST /v1/metrics (protobuf, gzip or not) and
// passes each request's metrics to consume.
func MetricsHandler(consume func(pmetric.Metrics)) http.Handler {
	return handler("/v1/metrics", func(raw []byte) ([]byte, error) {
		req := pmetricotlp.NewExportRequest()
		if err := req.UnmarshalProto(raw); err != nil {
			return nil, err
		}
		consume(req.Metrics())
		return pmetricotlp.NewExportResponse().MarshalProto()
	})
}

// handler serves POST path: export decodes the request body and returns
// the response body.
func handler(path string, export func([]byte) ([]byte, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := export(raw)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	})
}

// ForEach calls f for every log record, with its resource.
func ForEach(ld plog.Logs, f func(pcommon.Resource, plog.LogRecord)) {
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		res := rls.At(i).Resource()
		sls := rls.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			lrs := sls.At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				f(res, lrs.At(k))
			}
		}
	}
}

// ForEachMetric calls f for every metric, with its resource.
func ForEachMetric(md pmetric.Metrics, f func(pcommon.Resource, pmetric.Metric)) {
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		res := rms.At(i).Resource()
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				f(res, ms.At(k))
			}
		}
	}
}
