package receiver

import (
	"fmt"

	"github.com/netflowtcpend/netflowtcpend/internal/kubecache"
)

// KubernetesConfig is the kubernetes: block, which turns on the
// netflow.peer.k8s.* attributes: names of the peer from the API server.
type KubernetesConfig struct {
	// AuthType says how to reach the API server: serviceAccount (the
	// pod's, the default) or kubeConfig (the kubeconfig that client-go's
	// loading rules find: KUBECONFIG, else ~/.kube/config).
	AuthType kubecache.AuthType `mapstructure:"auth_type"`
	// Context is the kubeconfig context to use with kubeConfig; empty: the
	// kubeconfig's current context.
	Context string `mapstructure:"context"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// defaultKubernetesConfig is the configuration of an empty kubernetes:
// block.
func defaultKubernetesConfig() KubernetesConfig {
	return KubernetesConfig{AuthType: kubecache.AuthServiceAccount}
}

func (k *KubernetesConfig) validate() []error {
	var errs []error
	switch k.AuthType {
	case kubecache.AuthServiceAccount, kubecache.AuthKubeConfig:
	default:
		errs = append(errs, fmt.Errorf("kubernetes.auth_type %q must be %s (in a pod, the default) or %s (the kubeconfig that KUBECONFIG names)",
			k.AuthType, kubecache.AuthServiceAccount, kubecache.AuthKubeConfig))
	}
	if k.Context != "" && k.AuthType != kubecache.AuthKubeConfig {
		errs = append(errs, fmt.Errorf("kubernetes.context %q chooses a kubeconfig context: it needs auth_type %s", k.Context, kubecache.AuthKubeConfig))
	}
	return errs
}
