package kubecache

import (
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestResourceOfPath(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/pods":                      "pods",
		"/api/v1/nodes":                     "nodes",
		"/apis/apps/v1/replicasets":         "replicasets.apps",
		"/apis/batch/v1/jobs":               "jobs.batch",
		"/api/v1/namespaces/default/pods":   "",
		"/apis/apps/v1/namespaces/x/jobs/y": "",
		"/readyz":                           "",
	} {
		assert.Equal(t, want, ResourceOfPath(path), path)
	}
}

func TestMissingRightFromForbidden(t *testing.T) {
	// As the API server says it.
	err := apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "replicasets"}, "",
		errors.New(`User "collector" cannot watch resource "replicasets" in API group "apps" at the cluster scope`))
	assert.Equal(t, "watch replicasets.apps", missingRight("replicasets.apps", err))
	assert.Empty(t, missingRight("pods", errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")))
}

func TestHealthWarnsOncePerOutage(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	h := newHealth(zap.New(core), 5*time.Second)
	now := time.Unix(1000, 0)
	h.now = func() time.Time { return now }
	refused := errors.New("connection refused")

	// The ends of watches that informers resume are no failures.
	h.fail("pods", io.EOF)
	h.fail("pods", apierrors.NewResourceExpired("too old"))
	h.report()
	assert.Zero(t, logs.Len())

	// A failure shorter than the grace: nothing said.
	h.fail("pods", refused)
	now = now.Add(2 * time.Second)
	h.report()
	h.ok("pods")
	h.report()
	assert.Zero(t, logs.Len())

	// A longer one: one warning naming every failing resource.
	h.fail("pods", refused)
	h.fail("nodes", refused)
	for range 10 {
		now = now.Add(time.Second)
		h.report()
		h.fail("pods", refused) // the informer retries and fails again
	}
	warnings := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if assert.Len(t, warnings, 1) {
		assert.Equal(t, []any{"nodes", "pods"}, warnings[0].ContextMap()["resources"])
		assert.Contains(t, warnings[0].Message, "cannot be reached")
	}
	// Back only when every resource is.
	h.ok("pods")
	h.report()
	assert.Zero(t, logs.FilterMessageSnippet("names are back").Len())
	h.ok("nodes")
	h.report()
	assert.Equal(t, 1, logs.FilterMessageSnippet("names are back").Len())
	h.report()
	assert.Equal(t, 2, logs.Len())
}

func TestBestPod(t *testing.T) {
	old := &pod{created: 100}
	newer := &pod{created: 200}
	leaving := &pod{created: 300, deleting: true}
	assert.Nil(t, bestPod(nil))
	assert.Same(t, newer, bestPod([]*pod{old, newer}))
	assert.Same(t, newer, bestPod([]*pod{newer, old}))
	assert.Same(t, newer, bestPod([]*pod{leaving, newer}))
	assert.Same(t, old, bestPod([]*pod{old, leaving}))
	assert.Same(t, leaving, bestPod([]*pod{leaving}))
}

func TestParseIPs(t *testing.T) {
	host := netip.MustParseAddr("10.0.0.1")
	got := parseIPs([]string{"10.1.0.1", "::ffff:10.1.0.2", "not-an-ip", "", "10.0.0.1", "10.1.0.1", "fd00::1", "0.0.0.0"}, []netip.Addr{host})
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("fd00::1")}, got)
}
