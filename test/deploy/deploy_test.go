package deploy

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/netflowtcpend/netflowtcpend/internal/kubecache"
	"github.com/netflowtcpend/netflowtcpend/test/loadtest"
)

const (
	receiverType = "netflow_tcp_end"
	// The image's binary (scripts/build-image.sh) and its default user.
	binaryPath = "/otelcol-netflowtcpend"
	imageUID   = 65534
	// The host paths the collector reads. /proc needs none: with hostPID
	// the runtime mounts the host PID namespace's /proc.
	cgroupRoot = "/sys/fs/cgroup"
)

// capabilitiesDoc is the page whose "Capabilities" section documents the
// capabilities the collector needs, in a table whose first column names
// each one.
const capabilitiesDoc = "../../docs/kubernetes.md"

// readCapabilities returns the capabilities named in the first column of
// the table under capabilitiesDoc's "Capabilities" heading, without "CAP_"
// (as Kubernetes spells them).
func readCapabilities(t *testing.T) []corev1.Capability {
	t.Helper()
	f, err := os.Open(capabilitiesDoc)
	require.NoError(t, err)
	defer f.Close()
	cell := regexp.MustCompile("^\\|\\s*`CAP_([A-Z_]+)`\\s*\\|")
	var caps []corev1.Capability
	in, table := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			if in {
				break
			}
			in = strings.TrimSpace(strings.TrimLeft(line, "#")) == "Capabilities"
			continue
		}
		if !in {
			continue
		}
		if strings.HasPrefix(line, "|") {
			table = true
			if m := cell.FindStringSubmatch(line); m != nil {
				caps = append(caps, corev1.Capability(m[1]))
			}
		} else if table {
			break // the table ended
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, caps, capabilitiesDoc+` has no "Capabilities" section with a table of CAP_ rows`)
	return caps
}

// decodeStrict decodes YAML into v as the API server's strict field
// validation does: duplicate keys, unknown fields and keys that match a
// field only case-insensitively (hostPid for hostPID) are errors.
// (sigs.k8s.io/yaml's UnmarshalStrict alone uses encoding/json, which
// matches keys case-insensitively.)
func decodeStrict(t *testing.T, doc []byte, v any) {
	t.Helper()
	require.NoError(t, strictUnmarshal(doc, v))
}

func strictUnmarshal(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

type manifests struct {
	serviceAccount *corev1.ServiceAccount
	configMap      *corev1.ConfigMap
	daemonSet      *appsv1.DaemonSet
	clusterRole    *rbacv1.ClusterRole
	binding        *rbacv1.ClusterRoleBinding
}

func readManifests(t *testing.T) manifests {
	t.Helper()
	b, err := os.ReadFile("../../deploy/daemonset.yaml")
	require.NoError(t, err)
	var m manifests
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		require.NoError(t, yaml.Unmarshal([]byte(doc), &tm))
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 ServiceAccount":
			require.Nil(t, m.serviceAccount, "two ServiceAccounts")
			m.serviceAccount = &corev1.ServiceAccount{}
			decodeStrict(t, []byte(doc), m.serviceAccount)
		case "v1 ConfigMap":
			require.Nil(t, m.configMap, "two ConfigMaps")
			m.configMap = &corev1.ConfigMap{}
			decodeStrict(t, []byte(doc), m.configMap)
		case "apps/v1 DaemonSet":
			require.Nil(t, m.daemonSet, "two DaemonSets")
			m.daemonSet = &appsv1.DaemonSet{}
			decodeStrict(t, []byte(doc), m.daemonSet)
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			require.Nil(t, m.clusterRole, "two ClusterRoles")
			m.clusterRole = &rbacv1.ClusterRole{}
			decodeStrict(t, []byte(doc), m.clusterRole)
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			require.Nil(t, m.binding, "two ClusterRoleBindings")
			m.binding = &rbacv1.ClusterRoleBinding{}
			decodeStrict(t, []byte(doc), m.binding)
		default:
			t.Fatalf("unexpected object %s %s in daemonset.yaml", tm.APIVersion, tm.Kind)
		}
	}
	require.NotNil(t, m.serviceAccount, "no ServiceAccount")
	require.NotNil(t, m.configMap, "no ConfigMap")
	require.NotNil(t, m.daemonSet, "no DaemonSet")
	require.NotNil(t, m.clusterRole, "no ClusterRole")
	require.NotNil(t, m.binding, "no ClusterRoleBinding")
	return m
}

func stripComments(doc string) string {
	var out []string
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// helmValues are the keys of the OpenTelemetry Collector chart's values.yaml
// (chart 0.170.0) that helm-values.yaml sets; decoding is strict, so any
// other key fails the test.
type helmValues struct {
	Mode  string `json:"mode"`
	Image struct {
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
		PullPolicy string `json:"pullPolicy"`
	} `json:"image"`
	Command struct {
		Name string `json:"name"`
	} `json:"command"`
	ServiceAccount struct {
		Create                       bool  `json:"create"`
		AutomountServiceAccountToken *bool `json:"automountServiceAccountToken"`
	} `json:"serviceAccount"`
	ClusterRole struct {
		Create bool                `json:"create"`
		Rules  []rbacv1.PolicyRule `json:"rules"`
	} `json:"clusterRole"`
	HostPID            bool                        `json:"hostPID"`
	HostNetwork        bool                        `json:"hostNetwork"`
	PodSecurityContext corev1.PodSecurityContext   `json:"podSecurityContext"`
	SecurityContext    corev1.SecurityContext      `json:"securityContext"`
	Tolerations        []corev1.Toleration         `json:"tolerations"`
	ExtraEnvs          []corev1.EnvVar             `json:"extraEnvs"`
	ExtraVolumes       []corev1.Volume             `json:"extraVolumes"`
	ExtraVolumeMounts  []corev1.VolumeMount        `json:"extraVolumeMounts"`
	Resources          corev1.ResourceRequirements `json:"resources"`
	UseGOMEMLIMIT      bool                        `json:"useGOMEMLIMIT"`
	Ports              map[string]struct {
		Enabled bool `json:"enabled"`
	} `json:"ports"`
	Service struct {
		Enabled bool `json:"enabled"`
	} `json:"service"`
	AlternateConfig map[string]any `json:"alternateConfig"`
}

func readHelmValues(t *testing.T) helmValues {
	t.Helper()
	b, err := os.ReadFile("../../deploy/helm-values.yaml")
	require.NoError(t, err)
	var v helmValues
	decodeStrict(t, b, &v)
	return v
}

// checkSecurity checks a container's security context, with the pod's as
// the fallback for the fields Kubernetes inherits from it.
func checkSecurity(t *testing.T, sc *corev1.SecurityContext, pod *corev1.PodSecurityContext) {
	t.Helper()
	require.NotNil(t, sc, "no container securityContext")
	require.NotNil(t, sc.Capabilities, "no capabilities")
	assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, "capabilities.drop")
	want := readCapabilities(t)
	assert.ElementsMatch(t, want, sc.Capabilities.Add,
		"capabilities.add must be the documented capability table (docs/kubernetes.md), no more, no less")
	assert.False(t, sc.Privileged != nil && *sc.Privileged, "privileged")
	// no_new_privs is compatible with the image's file capabilities because
	// the runtime puts the added capabilities in the permitted set
	// (docs/kubernetes.md).
	require.NotNil(t, sc.AllowPrivilegeEscalation, "allowPrivilegeEscalation unset (defaults to true)")
	assert.False(t, *sc.AllowPrivilegeEscalation, "allowPrivilegeEscalation")
	require.NotNil(t, sc.ReadOnlyRootFilesystem)
	assert.True(t, *sc.ReadOnlyRootFilesystem, "readOnlyRootFilesystem")

	runAsNonRoot, uid, profile := sc.RunAsNonRoot, sc.RunAsUser, sc.SeccompProfile
	if pod != nil {
		if runAsNonRoot == nil {
			runAsNonRoot = pod.RunAsNonRoot
		}
		if uid == nil {
			uid = pod.RunAsUser
		}
		if profile == nil {
			profile = pod.SeccompProfile
		}
	}
	require.NotNil(t, runAsNonRoot)
	assert.True(t, *runAsNonRoot, "runAsNonRoot")
	require.NotNil(t, uid)
	assert.EqualValues(t, imageUID, *uid, "runAsUser: the image's user")
	require.NotNil(t, profile, "no seccompProfile")
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, profile.Type)
}

// everyTaint is a sample of taints nodes carry; the tolerations must
// tolerate each.
var everyTaint = []corev1.Taint{
	{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule},
	{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoExecute},
	{Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoExecute},
	{Key: "node.kubernetes.io/disk-pressure", Effect: corev1.TaintEffectNoSchedule},
	{Key: "node.kubernetes.io/unschedulable", Effect: corev1.TaintEffectNoSchedule},
	{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule},
	{Key: "example.com/anything", Value: "x", Effect: corev1.TaintEffectPreferNoSchedule},
}

func checkTolerations(t *testing.T, tolerations []corev1.Toleration) {
	t.Helper()
	for _, taint := range everyTaint {
		ok := slices.ContainsFunc(tolerations, func(tol corev1.Toleration) bool {
			return tol.ToleratesTaint(logr.Discard(), &taint, false)
		})
		assert.True(t, ok, "no toleration for taint %s", taint.ToString())
	}
	// And any taint at all: an Exists toleration with no key and no effect.
	assert.True(t, slices.ContainsFunc(tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == "" && tol.TolerationSeconds == nil
	}), "no toleration {operator: Exists} for every taint")
}

func checkNodeNameEnv(t *testing.T, env []corev1.EnvVar) {
	t.Helper()
	i := slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == "K8S_NODE_NAME" })
	require.GreaterOrEqual(t, i, 0, "K8S_NODE_NAME not set")
	e := env[i]
	require.NotNil(t, e.ValueFrom, "K8S_NODE_NAME must come from the downward API")
	require.NotNil(t, e.ValueFrom.FieldRef)
	assert.Equal(t, "spec.nodeName", e.ValueFrom.FieldRef.FieldPath)
}

// checkHostPaths checks that the collector's host paths are mounted
// read-only where it reads them, and that no other host path is mounted.
func checkHostPaths(t *testing.T, volumes []corev1.Volume, mounts []corev1.VolumeMount) {
	t.Helper()
	hostPaths := map[string]string{} // volume name -> host path
	for _, v := range volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = path.Clean(v.HostPath.Path)
		}
	}
	found := false
	for _, m := range mounts {
		p, ok := hostPaths[m.Name]
		if !ok {
			continue
		}
		assert.Equal(t, cgroupRoot, p, "host path %s: the collector needs none but %s", p, cgroupRoot)
		assert.True(t, m.ReadOnly, "host path %s mounted writable", p)
		if p == cgroupRoot {
			found = true
			assert.Equal(t, cgroupRoot, path.Clean(m.MountPath),
				"the host's cgroup hierarchy must replace the container's own at %s", cgroupRoot)
			assert.Empty(t, m.SubPath)
		}
	}
	assert.True(t, found, "the host's %s is not mounted", cgroupRoot)
	for _, v := range volumes {
		if v.HostPath != nil && v.HostPath.Type != nil {
			assert.Equal(t, corev1.HostPathDirectory, *v.HostPath.Type, "host path %s", v.HostPath.Path)
		}
	}
}

// collectorConfig is the part of a collector configuration checked here.
type collectorConfig struct {
	Receivers  map[string]any `json:"receivers"`
	Processors map[string]any `json:"processors"`
	Exporters  map[string]any `json:"exporters"`
	Extensions map[string]any `json:"extensions"`
	Service    struct {
		Extensions []string `json:"extensions"`
		Pipelines  map[string]struct {
			Receivers  []string `json:"receivers"`
			Processors []string `json:"processors"`
			Exporters  []string `json:"exporters"`
		} `json:"pipelines"`
		Telemetry map[string]any `json:"telemetry"`
	} `json:"service"`
}

// checkCollectorConfig checks that the configuration runs the receiver in
// a logs pipeline, behind memory_limiter and batch, to the gateway over
// OTLP/gRPC, and returns memory_limiter's limit_mib.
func checkCollectorConfig(t *testing.T, raw []byte) (limitMiB int64) {
	t.Helper()
	var c collectorConfig
	require.NoError(t, yaml.Unmarshal(raw, &c), "collector configuration is not YAML")
	require.Contains(t, c.Receivers, receiverType)
	for id := range c.Receivers {
		assert.NotEqual(t, "netflowtcpend", strings.Split(id, "/")[0], "use the type %s, not the deprecated alias", receiverType)
	}
	found := false
	for name, p := range c.Service.Pipelines {
		if !slices.Contains(p.Receivers, receiverType) {
			continue
		}
		assert.True(t, name == "logs" || strings.HasPrefix(name, "logs/"), "%s in pipeline %s, not a logs pipeline", receiverType, name)
		found = true
		require.NotEmpty(t, p.Processors)
		assert.Equal(t, "memory_limiter", p.Processors[0], "memory_limiter must come first")
		assert.Contains(t, p.Processors, "batch")
		assert.Contains(t, p.Exporters, "otlp_grpc")
		for _, id := range slices.Concat(p.Processors, p.Exporters) {
			switch {
			case slices.Contains(p.Processors, id):
				assert.Contains(t, c.Processors, id)
			default:
				assert.Contains(t, c.Exporters, id)
			}
		}
	}
	assert.True(t, found, "no logs pipeline with receiver %s", receiverType)
	for _, id := range c.Service.Extensions {
		assert.Contains(t, c.Extensions, id)
	}
	assert.Contains(t, c.Service.Extensions, "health_check", "the probes need health_check")

	ml, ok := c.Processors["memory_limiter"].(map[string]any)
	require.True(t, ok, "memory_limiter has no settings")
	v, ok := ml["limit_mib"].(float64)
	require.True(t, ok, "memory_limiter.limit_mib: an absolute limit (percentages would read the host's hierarchy)")
	return int64(v)
}

func checkResources(t *testing.T, r corev1.ResourceRequirements, limitMiB int64, gomemlimit string) {
	t.Helper()
	limit, ok := r.Limits[corev1.ResourceMemory]
	require.True(t, ok, "no memory limit")
	request, ok := r.Requests[corev1.ResourceMemory]
	require.True(t, ok, "no memory request")
	assert.LessOrEqual(t, request.Cmp(limit), 0, "memory request above the limit")
	// make bench: RSS up to 95 MiB under churn.
	assert.GreaterOrEqual(t, request.Value(), int64(96<<20), "memory request below the measured peak RSS")
	// The Go heap limit leaves room for the binary, the runtime and the
	// kernel's maps charged to the pod.
	assert.LessOrEqual(t, limitMiB<<20+64<<20, limit.Value(),
		"memory_limiter.limit_mib %d MiB leaves under 64 MiB of the %s limit", limitMiB, limit.String())
	if gomemlimit != "" {
		g, err := resource.ParseQuantity(strings.TrimSuffix(gomemlimit, "B"))
		require.NoError(t, err, "GOMEMLIMIT %q", gomemlimit)
		assert.Less(t, g.Value(), limit.Value(), "GOMEMLIMIT at or above the container limit")
		assert.Greater(t, g.Value(), limitMiB<<20, "GOMEMLIMIT below memory_limiter's limit")
	}
	_, ok = r.Requests[corev1.ResourceCPU]
	assert.True(t, ok, "no CPU request")
}

// checkGOGC checks the garbage collector's setting: a GOGC above 100 trades
// heap for CPU (docs/performance.md) and is only safe with GOMEMLIMIT as the
// bound, where the heap would otherwise grow to GOGC% past its live data.
func checkGOGC(t *testing.T, env []corev1.EnvVar, bounded bool) {
	t.Helper()
	i := slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == "GOGC" })
	require.GreaterOrEqual(t, i, 0, "no GOGC: the examples and the manifests set what make bench measured")
	gogc, err := strconv.Atoi(env[i].Value)
	require.NoError(t, err, "GOGC %q", env[i].Value)
	if gogc > 100 {
		assert.True(t, bounded, "GOGC=%d without GOMEMLIMIT: nothing bounds the heap", gogc)
	}
}

// TestProductionExampleEnv checks that the environment examples/production.yaml
// tells users to run it with is the one its tests (test/e2e's backpressure,
// make soak) run it with.
func TestProductionExampleEnv(t *testing.T) {
	b, err := os.ReadFile("../../examples/production.yaml")
	require.NoError(t, err)
	var run string
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "OTLP_ENDPOINT=") {
			run = line
			break
		}
	}
	require.NotEmpty(t, run, "the header's command line")
	for _, kv := range loadtest.ProductionEnv {
		assert.Contains(t, strings.Fields(run), kv, "the header's command line")
	}
}

func TestDaemonSet(t *testing.T) {
	m := readManifests(t)
	ds := m.daemonSet
	pod := ds.Spec.Template.Spec

	assert.Equal(t, ds.Spec.Selector.MatchLabels, labelsSubset(ds.Spec.Template.Labels, ds.Spec.Selector.MatchLabels),
		"the selector must match the pod template's labels")
	assert.Equal(t, m.serviceAccount.Name, pod.ServiceAccountName)
	assert.True(t, pod.HostPID, "hostPID")
	assert.False(t, pod.HostNetwork, "hostNetwork")
	assert.False(t, pod.HostIPC, "hostIPC")
	require.NotNil(t, pod.AutomountServiceAccountToken)
	assert.True(t, *pod.AutomountServiceAccountToken, "the kubernetes: block reads the API server with the token")
	checkTolerations(t, pod.Tolerations)

	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	assert.NotEmpty(t, c.Image)
	checkSecurity(t, c.SecurityContext, pod.SecurityContext)
	checkNodeNameEnv(t, c.Env)
	checkHostPaths(t, pod.Volumes, c.VolumeMounts)

	// The ConfigMap's configuration is what --config names.
	var configFile string
	for _, a := range slices.Concat(c.Command, c.Args) {
		if f, ok := strings.CutPrefix(a, "--config="); ok {
			configFile = f
		}
	}
	require.NotEmpty(t, configFile, "no --config=FILE argument")
	mi := slices.IndexFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
		return strings.HasPrefix(configFile, path.Clean(vm.MountPath)+"/")
	})
	require.GreaterOrEqual(t, mi, 0, "%s is on no volume", configFile)
	vi := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[mi].Name })
	require.GreaterOrEqual(t, vi, 0)
	require.NotNil(t, pod.Volumes[vi].ConfigMap, "%s is not on the ConfigMap volume", configFile)
	assert.Equal(t, m.configMap.Name, pod.Volumes[vi].ConfigMap.Name)
	key := strings.TrimPrefix(configFile, path.Clean(c.VolumeMounts[mi].MountPath)+"/")
	raw, ok := m.configMap.Data[key]
	require.True(t, ok, "ConfigMap has no key %s", key)
	limitMiB := checkCollectorConfig(t, []byte(raw))

	var gomemlimit string
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			gomemlimit = e.Value
		}
	}
	checkResources(t, c.Resources, limitMiB, gomemlimit)
	checkGOGC(t, c.Env, gomemlimit != "")
	checkEnvReferences(t, []byte(raw), c.Env, nil)

	// The probes hit health_check's port.
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		require.NotNil(t, p)
		require.NotNil(t, p.HTTPGet)
		port := p.HTTPGet.Port.String()
		assert.True(t, port == "13133" || slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
			return cp.Name == port && cp.ContainerPort == 13133
		}), "probe on port %s, not health_check's 13133", port)
	}
}

// checkEnvReferences checks that every ${env:NAME} of the configuration is
// set in the container (or by the chart).
func checkEnvReferences(t *testing.T, raw []byte, env []corev1.EnvVar, preset []string) {
	t.Helper()
	for _, m := range regexp.MustCompile(`\$\{env:([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`).FindAllSubmatch(raw, -1) {
		name := string(m[1])
		if len(m[2]) > 0 || slices.Contains(preset, name) {
			continue
		}
		assert.True(t, slices.ContainsFunc(env, func(e corev1.EnvVar) bool { return e.Name == name }),
			"the configuration reads ${env:%s}, which the container does not set", name)
	}
}

func labelsSubset(labels, keys map[string]string) map[string]string {
	out := map[string]string{}
	for k := range keys {
		if v, ok := labels[k]; ok {
			out[k] = v
		}
	}
	return out
}

func TestHelmValues(t *testing.T) {
	v := readHelmValues(t)
	assert.Equal(t, "daemonset", v.Mode)
	assert.NotEmpty(t, v.Image.Repository)
	assert.NotEmpty(t, v.Image.Tag)
	// The chart runs /{command.name}.
	assert.Equal(t, binaryPath, "/"+v.Command.Name)
	assert.True(t, v.HostPID, "hostPID")
	assert.False(t, v.HostNetwork, "hostNetwork")
	require.NotNil(t, v.ServiceAccount.AutomountServiceAccountToken)
	assert.True(t, *v.ServiceAccount.AutomountServiceAccountToken, "the kubernetes: block reads the API server with the token")
	assert.True(t, v.ClusterRole.Create)
	checkReadOnlyRules(t, v.ClusterRole.Rules)
	checkSecurity(t, &v.SecurityContext, &v.PodSecurityContext)
	checkTolerations(t, v.Tolerations)
	checkNodeNameEnv(t, v.ExtraEnvs)
	checkHostPaths(t, v.ExtraVolumes, v.ExtraVolumeMounts)

	// Nothing listens for telemetry: every receiver port of the chart off.
	for name, p := range v.Ports {
		if name != "metrics" {
			assert.False(t, p.Enabled, "port %s enabled", name)
		}
	}
	for _, name := range []string{"otlp", "otlp-http", "jaeger-compact", "jaeger-thrift", "jaeger-grpc", "zipkin"} {
		assert.Contains(t, v.Ports, name, "the chart's port %s is enabled by default; disable it", name)
	}
	assert.False(t, v.Service.Enabled)

	require.NotEmpty(t, v.AlternateConfig, "alternateConfig: the chart's default config names receivers this distribution lacks")
	raw, err := yaml.Marshal(v.AlternateConfig)
	require.NoError(t, err)
	limitMiB := checkCollectorConfig(t, raw)
	// The chart sets GOMEMLIMIT to 80% of the memory limit.
	limit := v.Resources.Limits[corev1.ResourceMemory]
	assert.True(t, v.UseGOMEMLIMIT)
	checkResources(t, v.Resources, limitMiB, fmt.Sprintf("%d", limit.Value()*8/10))
	checkGOGC(t, v.ExtraEnvs, v.UseGOMEMLIMIT)
	// The chart sets MY_POD_IP (and the OTEL_K8S_* variables) itself.
	checkEnvReferences(t, raw, v.ExtraEnvs, []string{"MY_POD_IP"})
}

// checkReadOnlyRules checks that rules grant list and watch on exactly what
// the kubernetes: block reads (kubecache.Resources), and nothing else.
func checkReadOnlyRules(t *testing.T, rules []rbacv1.PolicyRule) {
	t.Helper()
	var granted []string
	for _, r := range rules {
		assert.ElementsMatch(t, kubecache.Verbs, r.Verbs, "verbs of %v: list and watch only (read-only; get is never used)", r.Resources)
		assert.Empty(t, r.ResourceNames)
		assert.Empty(t, r.NonResourceURLs)
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				granted = append(granted, schema.GroupResource{Group: g, Resource: res}.String())
			}
		}
	}
	var want []string
	for _, r := range kubecache.Resources {
		want = append(want, r.String())
	}
	assert.ElementsMatch(t, want, granted, "resources granted")
}

// The ClusterRole grants only reads of what the receiver reads, and the
// binding gives it to the DaemonSet's ServiceAccount; the configuration
// turns the kubernetes: block on.
func TestRBAC(t *testing.T) {
	m := readManifests(t)
	checkReadOnlyRules(t, m.clusterRole.Rules)
	assert.Equal(t, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: m.clusterRole.Name}, m.binding.RoleRef)
	require.Len(t, m.binding.Subjects, 1)
	s := m.binding.Subjects[0]
	assert.Equal(t, rbacv1.ServiceAccountKind, s.Kind)
	assert.Equal(t, m.serviceAccount.Name, s.Name)
	assert.NotEmpty(t, s.Namespace, "a ServiceAccount subject needs its namespace")

	var c collectorConfig
	require.NoError(t, yaml.Unmarshal([]byte(m.configMap.Data["config.yaml"]), &c))
	r, ok := c.Receivers[receiverType].(map[string]any)
	require.True(t, ok)
	assert.Contains(t, r, "kubernetes", "the receiver's kubernetes: block")
}

// TestSameSettings keeps the two deployments from drifting apart.
func TestSameSettings(t *testing.T) {
	m := readManifests(t)
	v := readHelmValues(t)
	pod := m.daemonSet.Spec.Template.Spec
	c := pod.Containers[0]
	assert.Equal(t, *c.SecurityContext, v.SecurityContext, "container securityContext")
	assert.Equal(t, *pod.SecurityContext, v.PodSecurityContext, "pod securityContext")
	assert.Equal(t, pod.Tolerations, v.Tolerations)
	assert.True(t, c.Resources.Requests.Memory().Equal(*v.Resources.Requests.Memory()))
	assert.True(t, c.Resources.Limits.Memory().Equal(*v.Resources.Limits.Memory()))
	assert.True(t, c.Resources.Requests.Cpu().Equal(*v.Resources.Requests.Cpu()))
	assert.True(t, c.Resources.Limits.Cpu().Equal(*v.Resources.Limits.Cpu()))
	assert.Equal(t, v.Image.Repository+":"+v.Image.Tag, c.Image)
	assert.Equal(t, m.clusterRole.Rules, v.ClusterRole.Rules, "the chart's ClusterRole rules")

	// The same pipeline; the health_check and metrics addresses differ only
	// in the pod IP variable's name (POD_IP here, the chart's MY_POD_IP).
	var a, b map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(strings.ReplaceAll(m.configMap.Data["config.yaml"], "${env:POD_IP}", "${env:MY_POD_IP}")), &a))
	raw, err := yaml.Marshal(v.AlternateConfig)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &b))
	assert.Equal(t, a, b, "the ConfigMap's configuration and alternateConfig differ")
}

// TestStrictDecoding makes sure the decoding above would catch a misspelt
// key, in both files' types.
func TestStrictDecoding(t *testing.T) {
	var ds appsv1.DaemonSet
	err := strictUnmarshal([]byte("apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  template:\n    spec:\n      hostPid: true\n"), &ds)
	require.ErrorContains(t, err, "hostPid")
	var v helmValues
	err = strictUnmarshal([]byte("mode: daemonset\nsecurityContext:\n  capability: {}\n"), &v)
	require.ErrorContains(t, err, "capability")
	err = strictUnmarshal([]byte("mode: daemonset\nhostPid: true\n"), &v)
	require.ErrorContains(t, err, "hostPid")
	err = strictUnmarshal([]byte("mode: daemonset\nmode: deployment\n"), &v)
	assert.ErrorContains(t, err, "mode")
}
