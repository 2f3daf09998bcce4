package kubecache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// AuthType says how the collector finds and authenticates to the API
// server, as the collector's Kubernetes components spell it.
type AuthType string

// The ways to reach the API server.
const (
	// AuthServiceAccount: the pod's service account, as in-cluster clients
	// do (the token and CA the kubelet mounts, KUBERNETES_SERVICE_HOST).
	AuthServiceAccount AuthType = "serviceAccount"
	// AuthKubeConfig: the kubeconfig that client-go's loading rules find:
	// the files KUBECONFIG lists (merged), else ~/.kube/config.
	AuthKubeConfig AuthType = "kubeConfig"
)

// ErrNoKubeConfig is what RESTConfig wraps when auth type kubeConfig finds
// no kubeconfig file.
var ErrNoKubeConfig = errors.New("no kubeconfig found")

// RESTConfig returns the API server configuration of an auth type;
// kubeContext chooses a context of the kubeconfig (empty: its current
// context). Each error says what to fix.
func RESTConfig(auth AuthType, kubeContext string) (*rest.Config, error) {
	switch auth {
	case AuthServiceAccount, "":
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("auth_type %s: %w; run the collector in a pod whose service account token is mounted "+
				"(automountServiceAccountToken: true), or use auth_type %s", AuthServiceAccount, err, AuthKubeConfig)
		}
		return cfg, nil
	case AuthKubeConfig:
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if !anyFileExists(rules.GetLoadingPrecedence()) {
			return nil, fmt.Errorf("auth_type %s: %w (looked at %s); set KUBECONFIG to a kubeconfig file",
				AuthKubeConfig, ErrNoKubeConfig, strings.Join(rules.GetLoadingPrecedence(), ", "))
		}
		loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
			&clientcmd.ConfigOverrides{CurrentContext: kubeContext})
		cfg, err := loader.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("auth_type %s: kubeconfig %s: %w", AuthKubeConfig,
				strings.Join(rules.GetLoadingPrecedence(), ", "), err)
		}
		return cfg, nil
	default:
		return nil, fmt.Errorf("auth_type %q is not %s or %s", auth, AuthServiceAccount, AuthKubeConfig)
	}
}

func anyFileExists(paths []string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}
