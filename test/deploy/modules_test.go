package deploy

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The component's module is what every ocb build that imports it takes into
// its module graph, where minimal version selection raises shared modules
// to the versions it requires. So its go.mod requires only what the
// receiver's packages and their own tests import, and nothing that only the
// test module (e2e, bench, soak, these tests, the VM tools) needs reaches a
// distribution built from builder-config.yaml.
func TestComponentModuleStaysLean(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	component := listModules(t, root, "-test")
	tests := listModules(t, filepath.Join(root, "test"), "-test")

	for _, r := range goModRequires(t, root) {
		if !r.Indirect {
			assert.Contains(t, component, r.Path, "go.mod requires %s directly, but no package of the component nor its tests imports it: move it to test/go.mod or drop it", r.Path)
		}
	}

	var testOnly []string
	for m := range tests {
		if !component[m] {
			testOnly = append(testOnly, m)
		}
	}
	slices.Sort(testOnly)
	require.NotEmpty(t, testOnly, "the test module imports modules of its own (goldmark, nftables, grpc...)")

	dist := filepath.Join(root, "dist")
	if b := os.Getenv("NETFLOWTCPEND_BINARY"); b != "" {
		dist = filepath.Dir(b)
	}
	if _, err := os.Stat(filepath.Join(dist, "go.mod")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no distribution at %s (make build makes it; make test runs it first): %v", dist, err)
		}
		t.Skipf("no distribution at %s: run make build first (make test does)", dist)
	}
	inDist := map[string]bool{}
	for _, r := range goModRequires(t, dist) {
		inDist[r.Path] = true
	}
	for _, m := range testOnly {
		// A module that the collector's own components also import is
		// in the distribution for them (grpc, for the OTLP exporter).
		if inDist[m] && !distImports(t, dist, m) {
			t.Errorf("%s is in %s/go.mod, but only the test module imports it", m, dist)
		}
	}
	t.Logf("modules only the test module imports: %s", strings.Join(testOnly, ", "))
}

type requirement struct {
	Path     string
	Indirect bool
}

// goModRequires is what dir's go.mod requires.
func goModRequires(t *testing.T, dir string) []requirement {
	t.Helper()
	var mod struct{ Require []requirement }
	require.NoError(t, json.Unmarshal(goCommand(t, dir, "mod", "edit", "-json"), &mod))
	return mod.Require
}

// listModules is the set of modules whose packages the packages of the
// module in dir import, with their tests' imports when flag is -test.
func listModules(t *testing.T, dir string, flags ...string) map[string]bool {
	t.Helper()
	args := append([]string{"list", "-deps"}, flags...)
	args = append(args, "-f", "{{with .Module}}{{.Path}}{{end}}", "./...")
	set := map[string]bool{}
	for _, m := range strings.Fields(string(goCommand(t, dir, args...))) {
		set[m] = true
	}
	return set
}

// distImports reports whether a package of the distribution in dir (the
// collector's components, not their tests) comes from module m.
func distImports(t *testing.T, dir, m string) bool {
	t.Helper()
	return listModules(t, dir)[m]
}

func goCommand(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && errors.As(err, &exit) {
		t.Fatalf("go %s in %s: %v: %s", strings.Join(args, " "), dir, err, exit.Stderr)
	}
	require.NoError(t, err)
	return out
}
