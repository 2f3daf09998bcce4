package kubecache

import (
	"errors"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"go.uber.org/zap"
)

// health follows whether each informer can list and watch its resource, and
// says so in the log: one warning when names go missing (the API server
// cannot be reached, or refuses a right), naming each resource and why,
// and one line when they are back. The informers retry on their own
// meanwhile; records flow regardless.
type health struct {
	logger *zap.Logger
	now    func() time.Time
	grace  time.Duration // how long a failure may last before the warning

	mu      sync.Mutex
	failing map[string]failure // by resource
	since   time.Time          // the first failure of the current outage
	warned  bool
}

type failure struct {
	err  error
	when time.Time
}

func newHealth(logger *zap.Logger, grace time.Duration) *health {
	return &health{logger: logger, now: time.Now, grace: grace, failing: map[string]failure{}}
}

// fail records that listing or watching resource failed. The ends of a
// watch that the informer resumes at once (the server closed it, or its
// resourceVersion expired) are not failures.
func (h *health) fail(resource string, err error) {
	if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failing) == 0 && !h.warned {
		h.since = h.now()
	}
	h.failing[resource] = failure{err: err, when: h.now()}
}

// ok records that the API server answered a watch of resource: the
// informer has its objects again.
func (h *health) ok(resource string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.failing, resource)
}

// report writes the warning or the all-clear when due; the cache calls it
// every second.
func (h *health) report() {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case len(h.failing) > 0 && !h.warned && h.now().Sub(h.since) >= h.grace:
		h.warned = true
		resources := make([]string, 0, len(h.failing))
		for r := range h.failing {
			resources = append(resources, r)
		}
		sort.Strings(resources)
		fields := []zap.Field{zap.Strings("resources", resources)}
		var errs []error
		var rights []string
		for _, r := range resources {
			err := h.failing[r].err
			errs = append(errs, err)
			if right := missingRight(r, err); right != "" {
				rights = append(rights, right)
			}
		}
		if len(rights) > 0 {
			fields = append(fields, zap.Strings("missing_rights", rights))
		}
		fields = append(fields, zap.Errors("errors", errs))
		h.logger.Warn("Kubernetes names are missing from records until the API server answers: "+
			h.reason(rights)+"; records flow without them meanwhile, and names come back by themselves", fields...)
	case len(h.failing) == 0 && h.warned:
		h.warned = false
		h.logger.Info("Kubernetes names are back: the API server answers again",
			zap.Duration("missing_for", h.now().Sub(h.since)))
	}
}

func (h *health) reason(rights []string) string {
	if len(rights) > 0 {
		return "the API server refuses this collector a right it needs (" + strings.Join(rights, ", ") +
			"); grant it with the ClusterRole in deploy/"
	}
	return "it cannot be reached or fails"
}

// forbiddenVerb finds the verb in the API server's message for a refused
// request, e.g. `pods is forbidden: User "x" cannot watch resource "pods"
// in API group "" at the cluster scope`.
var forbiddenVerb = regexp.MustCompile(`cannot (\w+) resource`)

// missingRight names the right a Forbidden error says is missing, e.g.
// "watch pods"; "" for other errors.
func missingRight(resource string, err error) string {
	if !apierrors.IsForbidden(err) {
		return ""
	}
	verb := "list/watch"
	if m := forbiddenVerb.FindStringSubmatch(err.Error()); m != nil {
		verb = m[1]
	}
	return verb + " " + resource
}

// watchObserver is an http.RoundTripper that tells health of each watch the API
// server accepts: the informer of that resource works again. (Informers
// report their failures, but not their recoveries.)
type watchObserver struct {
	next   http.RoundTripper
	health *health
}

func (o *watchObserver) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusOK && req.Method == http.MethodGet && req.URL.Query().Get("watch") != "" {
		if r := resourceOfPath(req.URL.Path); r != "" {
			o.health.ok(r)
		}
	}
	return resp, err
}

// resourceOfPath returns the resource of a cluster-wide list or watch
// path, named as resourceName does: /api/v1/pods is "pods",
// /apis/apps/v1/replicasets is "replicasets.apps".
func resourceOfPath(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) == 3 && parts[0] == "api":
		return parts[2]
	case len(parts) == 4 && parts[0] == "apis":
		return parts[3] + "." + parts[1]
	}
	return ""
}
