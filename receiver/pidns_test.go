//go:build linux

package receiver

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// In a PID namespace of its own (the kernel's process id differs from the
// one getpid gives), the scan at start cannot see other namespaces' tasks:
// Start says so, once, and names the remedy; in the host's it says nothing.
// e2e's sandbox test runs the collector in a real one.
func TestStartWarnsInAPIDNamespaceOfItsOwn(t *testing.T) {
	for _, tt := range []struct {
		name string
		pid  func() int
		want int
	}{
		{"host PID namespace", os.Getpid, 0},
		{"PID namespace of its own", func() int { return 1 }, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			core, logs := observer.New(zap.WarnLevel)
			h.logger = zap.New(core)
			h.options = func(o *options) { o.ownPID = tt.pid }
			h.start()
			h.stop()
			warnings := logs.FilterMessageSnippet("PID namespace of its own").All()
			require.Len(t, warnings, tt.want)
			if tt.want == 0 {
				return
			}
			assert.Contains(t, warnings[0].Message, "direction unknown and no owner")
			assert.Contains(t, warnings[0].Message, "hostPID: true")
			fields := warnings[0].ContextMap()
			assert.EqualValues(t, 1, fields["pid"])
			assert.EqualValues(t, os.Getpid(), fields["kernel_pid"])
		})
	}
}
