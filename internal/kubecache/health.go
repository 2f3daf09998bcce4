package kubecache

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

	mu           sync.Mutex
	deniedRights map[string]bool    // rights the API server said it denies, warned of once
	failing      map[string]failure // by resource
	since        time.Time          // the first failure of the current outage
	warned       bool
}

type failure struct {
	err  error
	when time.Time
}

func newHealth(logger *zap.Logger, grace time.Duration) *health {
	return &health{logger: logger, now: time.Now, grace: grace, failing: map[string]failure{}, deniedRights: map[string]bool{}}
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
	if h.deniedRights[missingRight(resource, err)] {
		return // warned of by checkRights
	}
	if len(h.failing) == 0 && !h.warned {
		h.since = h.now()
	}
	h.failing[resource] = failure{err: err, when: h.now()}
}

// denied records the rights the API server denies (checkRights warned of
// them): refusals of those are no outage. It forgets the failures they
// explain.
func (h *health) denied(rights []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range rights {
		h.deniedRights[r] = true
	}
	for resource, f := range h.failing {
		if h.deniedRights[missingRight(resource, f.err)] {
			delete(h.failing, resource)
		}
	}
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

// refusal is the API server refusing a list or watch: an HTTP error
// status, as the transport sees it.
type refusal struct {
	verb, resource string
	status         string // e.g. "403 Forbidden"
	code           int
}

func (r *refusal) Error() string {
	return fmt.Sprintf("%s %s: the API server answered %s", r.verb, r.resource, r.status)
}

// missingRight names the right a refusal or a Forbidden error says is
// missing, e.g. "watch pods"; "" for other errors.
func missingRight(resource string, err error) string {
	var r *refusal
	if errors.As(err, &r) {
		if r.code == http.StatusForbidden {
			return r.verb + " " + r.resource
		}
		return ""
	}
	if !apierrors.IsForbidden(err) {
		return ""
	}
	verb := "list/watch"
	if m := forbiddenVerb.FindStringSubmatch(err.Error()); m != nil {
		verb = m[1]
	}
	return verb + " " + resource
}

// watchObserver is an http.RoundTripper that tells health how each list
// and watch went: informers retry a server that cannot be reached without
// a word to their error handlers (watch-list and watch back off on their
// own), and report no recovery at all. A watch the server accepts means
// the informer of that resource works; an error, or an error status, that
// it does not.
type watchObserver struct {
	next   http.RoundTripper
	health *health
}

func (o *watchObserver) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.next.RoundTrip(req)
	resource := ResourceOfPath(req.URL.Path)
	if resource == "" || req.Method != http.MethodGet {
		return resp, err
	}
	verb := "list"
	if req.URL.Query().Get("watch") != "" {
		verb = "watch"
	}
	switch {
	case err != nil:
		if req.Context().Err() == nil { // not this cache stopping
			o.health.fail(resource, fmt.Errorf("%s %s: %w", verb, resource, err))
		}
	case resp.StatusCode >= 400:
		o.health.fail(resource, &refusal{verb: verb, resource: resource, status: resp.Status, code: resp.StatusCode})
	case resp.StatusCode == http.StatusOK && verb == "watch":
		o.health.ok(resource)
	}
	return resp, err
}

// ResourceOfPath returns the resource of a cluster-wide list or watch
// path, named as resourceName does: /api/v1/pods is "pods",
// /apis/apps/v1/replicasets is "replicasets.apps".
func ResourceOfPath(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) == 3 && parts[0] == "api":
		return parts[2]
	case len(parts) == 4 && parts[0] == "apis":
		return parts[3] + "." + parts[1]
	}
	return ""
}
