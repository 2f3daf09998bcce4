package kubecache

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestRESTConfigFromKubeconfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir) // no ~/.kube/config
	t.Setenv("KUBECONFIG", "")

	_, err := RESTConfig(AuthKubeConfig, "")
	require.ErrorIs(t, err, ErrNoKubeConfig)
	assert.Contains(t, err.Error(), "set KUBECONFIG to a kubeconfig file")

	// KUBECONFIG lists files, merged; the first to set a key wins, and
	// context chooses among the contexts.
	kc := clientcmdapi.NewConfig()
	kc.Clusters["prod"] = &clientcmdapi.Cluster{Server: "https://prod.example.com:6443"}
	kc.Clusters["staging"] = &clientcmdapi.Cluster{Server: "https://staging.example.com:6443"}
	kc.AuthInfos["me"] = &clientcmdapi.AuthInfo{Token: "t"}
	kc.Contexts["prod"] = &clientcmdapi.Context{Cluster: "prod", AuthInfo: "me"}
	kc.Contexts["staging"] = &clientcmdapi.Context{Cluster: "staging", AuthInfo: "me"}
	kc.CurrentContext = "prod"
	first := filepath.Join(dir, "first")
	require.NoError(t, clientcmd.WriteToFile(*kc, first))
	t.Setenv("KUBECONFIG", filepath.Join(dir, "missing")+string(os.PathListSeparator)+first)

	cfg, err := RESTConfig(AuthKubeConfig, "")
	require.NoError(t, err)
	assert.Equal(t, "https://prod.example.com:6443", cfg.Host)
	cfg, err = RESTConfig(AuthKubeConfig, "staging")
	require.NoError(t, err)
	assert.Equal(t, "https://staging.example.com:6443", cfg.Host)
	_, err = RESTConfig(AuthKubeConfig, "nope")
	assert.ErrorContains(t, err, `context "nope" does not exist`)
}

func TestRESTConfigOutsideAPod(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	_, err := RESTConfig(AuthServiceAccount, "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "auth_type serviceAccount")
	assert.Contains(t, err.Error(), "automountServiceAccountToken: true")

	_, err = RESTConfig("token", "")
	assert.ErrorContains(t, err, `auth_type "token" is not serviceAccount or kubeConfig`)
}
