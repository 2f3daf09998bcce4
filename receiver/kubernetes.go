package receiver

import (
	"fmt"
	"slices"

	"github.com/netflowtcpend/netflowtcpend/internal/kubecache"
)

// The peer in Kubernetes terms (the kubernetes: block), from the API
// server.
const (
	AttrPeerK8sNamespace    = "netflow.peer.k8s.namespace.name"
	AttrPeerK8sPod          = "netflow.peer.k8s.pod.name"
	AttrPeerK8sWorkloadKind = "netflow.peer.k8s.workload.kind"
	AttrPeerK8sWorkloadName = "netflow.peer.k8s.workload.name"
	AttrPeerK8sNode         = "netflow.peer.k8s.node.name"
	AttrPeerK8sService      = "netflow.peer.k8s.service.name"
)

// k8sPeerKeys are the netflow.peer.k8s.* keys, in the order records carry
// them.
var k8sPeerKeys = []string{
	AttrPeerK8sNamespace, AttrPeerK8sPod, AttrPeerK8sWorkloadKind,
	AttrPeerK8sWorkloadName, AttrPeerK8sNode, AttrPeerK8sService,
}

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

// k8sMetricsAttributes checks the netflow.peer.k8s.* keys of
// metrics.attributes: records have them only with the kubernetes: block.
func (c *Config) k8sMetricsAttributes() []error {
	if c.Kubernetes.HasValue() {
		return nil
	}
	var errs []error
	for _, key := range c.Metrics.Attributes {
		if slices.Contains(k8sPeerKeys, key) {
			errs = append(errs, fmt.Errorf("metrics.attributes: %q is set only with the kubernetes: block; add it, or remove the key", key))
		}
	}
	return errs
}
