package kubecache

import (
	"context"

	"github.com/go-logr/logr"
	"go.uber.org/zap"
)

// zapSink is the logr sink that client-go's informers log to: their lines
// (a retry, a closed watch) go to the debug log, since health says what
// matters once.
type zapSink struct {
	logger *zap.Logger
	name   string
	values []any
}

func (s *zapSink) Init(logr.RuntimeInfo) {}

// maxVerbosity is the most verbose client-go level logged (klog's -v):
// from 3 on, client-go logs every list and watch.
const maxVerbosity = 2

func (s *zapSink) Enabled(level int) bool {
	return level <= maxVerbosity && s.logger.Core().Enabled(zap.DebugLevel)
}

func (s *zapSink) Info(_ int, msg string, kv ...any) {
	s.logger.Debug(msg, s.fields(nil, kv)...)
}

func (s *zapSink) Error(err error, msg string, kv ...any) {
	s.logger.Debug(msg, s.fields(err, kv)...)
}

func (s *zapSink) fields(err error, kv []any) []zap.Field {
	fields := []zap.Field{zap.String("source", "client-go")}
	if s.name != "" {
		fields = append(fields, zap.String("logger", s.name))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	all := append(append([]any{}, s.values...), kv...)
	for i := 0; i+1 < len(all); i += 2 {
		key, ok := all[i].(string)
		if !ok {
			continue
		}
		fields = append(fields, zap.Any(key, all[i+1]))
	}
	return fields
}

func (s *zapSink) WithValues(kv ...any) logr.LogSink {
	return &zapSink{logger: s.logger, name: s.name, values: append(append([]any{}, s.values...), kv...)}
}

func (s *zapSink) WithName(name string) logr.LogSink {
	if s.name != "" {
		name = s.name + "." + name
	}
	return &zapSink{logger: s.logger, name: name, values: s.values}
}

// warningLogger sends the API server's warnings to the debug log.
type warningLogger struct{ logger *zap.Logger }

func (w warningLogger) HandleWarningHeaderWithContext(_ context.Context, code int, agent, text string) {
	w.logger.Debug("Kubernetes API server warning", zap.Int("code", code), zap.String("agent", agent), zap.String("text", text))
}
