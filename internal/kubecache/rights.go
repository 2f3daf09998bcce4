package kubecache

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Verbs are the verbs the cache needs on each of Resources.
var Verbs = []string{"list", "watch"}

// checkRights asks the API server, once it answers, whether this
// collector's identity has every right the cache needs, and warns once
// naming each one it lacks (SelfSubjectAccessReview, which every
// authenticated user may ask). Informers alone would not tell: against an
// API server that streams the initial list through the watch, a missing
// "list" shows only on servers that do not; a missing "watch" shows as a
// stream of relists. It retries while the API server cannot be reached.
func (c *Cache) checkRights(ctx context.Context) {
	var missing []string
	err := wait.ExponentialBackoffWithContext(ctx, wait.Backoff{Duration: time.Second, Factor: 2, Cap: 30 * time.Second, Steps: 1 << 30},
		func(ctx context.Context) (bool, error) {
			var err error
			missing, err = c.missingRights(ctx)
			if err != nil {
				c.logger.Debug("Could not ask the API server for this collector's rights; retrying", zap.Error(err))
				return false, nil
			}
			return true, nil
		})
	if err != nil {
		return // stopped
	}
	c.health.denied(missing)
	if len(missing) == 0 {
		c.logger.Debug("The API server grants every right the Kubernetes names need")
		return
	}
	c.logger.Warn("The API server refuses this collector rights that Kubernetes names need: names of what it cannot list "+
		"and watch are missing or stale; grant them with the ClusterRole in deploy/ (verbs list and watch)",
		zap.Strings("missing_rights", missing))
}

// missingRights returns the rights the API server denies, as "verb
// resource" (e.g. "watch replicasets.apps").
func (c *Cache) missingRights(ctx context.Context) ([]string, error) {
	var missing []string
	for _, r := range Resources {
		for _, verb := range Verbs {
			review, err := c.typed.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: verb, Group: r.Group, Resource: r.Resource,
				}},
			}, metav1.CreateOptions{})
			if err != nil {
				return nil, fmt.Errorf("review %s %s: %w", verb, r, err)
			}
			if !review.Status.Allowed {
				missing = append(missing, verb+" "+r.String())
			}
		}
	}
	return missing, nil
}
