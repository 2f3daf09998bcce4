//go:build linux

package kubeapi

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// ClusterRoleFromManifest returns the one ClusterRole of a multi-document
// YAML manifest (deploy/daemonset.yaml), so that tests grant exactly what
// the shipped manifest grants.
func ClusterRoleFromManifest(path string) (*rbacv1.ClusterRole, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var found *rbacv1.ClusterRole
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if tm.Kind != "ClusterRole" {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("%s: two ClusterRoles", path)
		}
		found = &rbacv1.ClusterRole{}
		if err := yaml.UnmarshalStrict([]byte(doc), found); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s: no ClusterRole", path)
	}
	return found, nil
}

// ApplyServiceAccountRBAC creates, as a manifest's author wrote them, the
// ServiceAccount, ClusterRole and ClusterRoleBinding of a multi-document
// manifest (deploy/daemonset.yaml), in the ServiceAccount's namespace
// (made if missing), and returns a token of that ServiceAccount
// (TokenRequest): the identity a pod of the manifest runs with.
func (o Objects) ApplyServiceAccountRBAC(ctx context.Context, path, namespace string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var sa *corev1.ServiceAccount
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		switch tm.Kind {
		case "ServiceAccount":
			sa = &corev1.ServiceAccount{}
			if err := yaml.UnmarshalStrict([]byte(doc), sa); err != nil {
				return "", err
			}
			if err := o.Namespace(ctx, namespace); err != nil && !apierrors.IsAlreadyExists(err) {
				return "", err
			}
			if _, err := o.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
				return "", err
			}
		case "ClusterRole":
			role := &rbacv1.ClusterRole{}
			if err := yaml.UnmarshalStrict([]byte(doc), role); err != nil {
				return "", err
			}
			if _, err := o.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
				return "", err
			}
		case "ClusterRoleBinding":
			binding := &rbacv1.ClusterRoleBinding{}
			if err := yaml.UnmarshalStrict([]byte(doc), binding); err != nil {
				return "", err
			}
			if _, err := o.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
				return "", err
			}
		}
	}
	if sa == nil {
		return "", fmt.Errorf("%s: no ServiceAccount", path)
	}
	tr, err := o.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

// Grant creates role under a name of its own for user, and binds it to
// user: user then has exactly the rights of role.
func (o Objects) Grant(ctx context.Context, user string, role *rbacv1.ClusterRole) error {
	name := "netflowtcpend-test-" + strings.ToLower(user)
	r := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: role.Rules}
	if _, err := o.Client.RbacV1().ClusterRoles().Create(ctx, r, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := o.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	return o.waitAuthorized(ctx, user, r)
}

// waitAuthorized waits until the API server's authorizer, which reads
// roles and bindings through informers of its own, allows user one rule of
// role: then it has the role and the binding, and so every rule. A test
// that checked rights before that would see some refused for a moment.
func (o Objects) waitAuthorized(ctx context.Context, user string, role *rbacv1.ClusterRole) error {
	if len(role.Rules) == 0 {
		return nil
	}
	rule := role.Rules[0]
	if len(rule.APIGroups) == 0 || len(rule.Resources) == 0 || len(rule.Verbs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		review, err := o.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: rule.APIGroups[0], Resource: rule.Resources[0], Verb: rule.Verbs[0]}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("access review for %s: %w", user, err)
		}
		if review.Status.Allowed {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not allowed to %s %s after its binding: %w", user, rule.Verbs[0], rule.Resources[0], ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Without returns a copy of role without one verb on one resource
// (resource as "pods" or "replicasets.apps").
func Without(role *rbacv1.ClusterRole, verb, resource string) *rbacv1.ClusterRole {
	group, res := "", resource
	if i := strings.IndexByte(resource, '.'); i >= 0 {
		res, group = resource[:i], resource[i+1:]
	}
	out := role.DeepCopy()
	var rules []rbacv1.PolicyRule
	for _, r := range out.Rules {
		if !contains(r.APIGroups, group) || !contains(r.Resources, res) || !contains(r.Verbs, verb) {
			rules = append(rules, r)
			continue
		}
		// Split: the other resources keep every verb; this one loses verb.
		var others []string
		for _, x := range r.Resources {
			if x != res {
				others = append(others, x)
			}
		}
		if len(others) > 0 {
			keep := *r.DeepCopy()
			keep.Resources = others
			rules = append(rules, keep)
		}
		var verbs []string
		for _, v := range r.Verbs {
			if v != verb {
				verbs = append(verbs, v)
			}
		}
		if len(verbs) > 0 {
			cut := *r.DeepCopy()
			cut.APIGroups, cut.Resources, cut.Verbs = []string{group}, []string{res}, verbs
			rules = append(rules, cut)
		}
	}
	out.Rules = rules
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s || x == "*" {
			return true
		}
	}
	return false
}
