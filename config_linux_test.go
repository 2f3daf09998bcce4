package netflowtcpend

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/netflowtcpend/netflowtcpend/internal/cgroupv2"
	"github.com/netflowtcpend/netflowtcpend/internal/metadata"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testenv"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/testnet"
	flowreceiver "github.com/netflowtcpend/netflowtcpend/receiver"
)

func TestValidateAcceptsCgroupV2Directories(t *testing.T) {
	root, err := cgroupv2.Root()
	if err != nil {
		t.Skipf("no cgroup v2 mount here: %v", err)
	}
	cfg := flowreceiver.DefaultConfig()
	cfg.CgroupPath = root
	require.NoError(t, cfg.Validate())

	// A file inside the cgroup filesystem is not a cgroup.
	cfg.CgroupPath = filepath.Join(root, "cgroup.procs")
	assert.ErrorContains(t, cfg.Validate(), "is a file")
}

// validateYAML decodes the receiver's YAML block as the collector does and
// validates it.
func validateYAML(t *testing.T, block string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte(metadata.Type.String()+":\n"+block), 0o600))
	cm, err := confmaptest.LoadConf(path)
	require.NoError(t, err)
	sub, err := cm.Sub(metadata.Type.String())
	require.NoError(t, err)
	cfg := NewFactory().CreateDefaultConfig()
	if err := sub.Unmarshal(cfg); err != nil {
		return err
	}
	return confmap.Validate(cfg)
}

// cgroupV1Dir returns a directory of a cgroup v1 hierarchy, or "" on hosts
// that mount none.
func cgroupV1Dir(t *testing.T) string {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	require.NoError(t, err)
	if len(mounts) == 0 {
		return ""
	}
	return mounts[0].Mountpoint
}

// Configurations that only the host can tell are wrong: paths that are
// files, on cgroup v1, missing; and cgroup filters that contradict
// cgroup_path or each other. Each error names the key and the fix.
func TestValidateCgroupPathsOfThisHost(t *testing.T) {
	root, err := cgroupv2.Root()
	if err != nil {
		t.Skipf("no cgroup v2 mount here: %v", err)
	}
	v1 := cgroupV1Dir(t)

	type tc struct {
		name, yaml, wantErr string
		needs               string // "v1": a cgroup v1 hierarchy
	}
	cases := []tc{
		{name: "cgroup_path is a file", yaml: "cgroup_path: " + root + "/cgroup.procs",
			wantErr: "cgroup_path: " + root + "/cgroup.procs is a file: not a directory on a cgroup v2 filesystem; use a cgroup v2 directory or leave it empty for the root"},
		{name: "cgroup_path on cgroup v1", needs: "v1", yaml: "cgroup_path: " + v1,
			wantErr: "cgroup_path: " + v1 + " is in a cgroup v1 hierarchy; eBPF programs attach to cgroup v2 only (cgroup v2 is mounted at " + root +
				"); use a cgroup v2 directory or leave it empty for the root"},
		{name: "cgroup_path missing", yaml: "cgroup_path: " + root + "/netflowtcpend-no-such-cgroup",
			wantErr: "cgroup_path: " + root + "/netflowtcpend-no-such-cgroup does not exist; create it first"},
		{name: "cgroup_path not a cgroup", yaml: "cgroup_path: /tmp",
			wantErr: "cgroup_path: /tmp is not a directory on a cgroup v2 filesystem (cgroup v2 is mounted at " + root + "); use a cgroup v2 directory"},
		{name: "include.cgroups on cgroup v1", needs: "v1", yaml: "filters: {include: {cgroups: [" + v1 + "]}}",
			wantErr: "filters.include.cgroups: " + v1 + " is in a cgroup v1 hierarchy; eBPF programs attach to cgroup v2 only (cgroup v2 is mounted at " + root +
				"); list cgroup v2 directories"},
		{name: "exclude.cgroups a file", yaml: "filters: {exclude: {cgroups: [" + root + "/cgroup.procs]}}",
			wantErr: "filters.exclude.cgroups: " + root + "/cgroup.procs is a file: not a directory on a cgroup v2 filesystem; list cgroup v2 directories"},
		{name: "exclude.cgroups the root", yaml: "filters: {exclude: {cgroups: [" + root + "]}}",
			wantErr: "filters.exclude.cgroups: " + root + " holds all of " + root + ", the cgroup watched (cgroup_path), so every record would be left out; " +
				"set cgroup_path to what to watch, or remove the entry"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.needs == "v1" && v1 == "" {
				t.Skip("this host mounts no cgroup v1 hierarchy")
			}
			err := validateYAML(t, "  "+strings.ReplaceAll(c.yaml, "\n", "\n  ")+"\n")
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.wantErr)
		})
	}

	// Cgroup filters against cgroup_path and each other: needs cgroups of
	// the test's own.
	t.Run("filters", func(t *testing.T) {
		testenv.RequireRoot(t)
		a := testnet.NewCgroup(t)
		inner := a.Child(t, "inner")
		innermost := inner.Child(t, "innermost")
		other := testnet.NewCgroup(t)
		for _, c := range []tc{
			{name: "include outside cgroup_path", yaml: fmt.Sprintf("cgroup_path: %s\nfilters: {include: {cgroups: [%s]}}", a.Path, other.Path),
				wantErr: "filters.include.cgroups: " + other.Path + " is not within " + a.Path + ", the cgroup watched (cgroup_path), so no record can match it; list cgroups below " + a.Path},
			{name: "exclude outside cgroup_path", yaml: fmt.Sprintf("cgroup_path: %s\nfilters: {exclude: {cgroups: [%s]}}", a.Path, other.Path),
				wantErr: "filters.exclude.cgroups: " + other.Path + " is not within " + a.Path + ", the cgroup watched (cgroup_path), so it leaves nothing out; list cgroups below " + a.Path},
			{name: "exclude above cgroup_path", yaml: fmt.Sprintf("cgroup_path: %s\nfilters: {exclude: {cgroups: [%s]}}", inner.Path, a.Path),
				wantErr: "filters.exclude.cgroups: " + a.Path + " holds all of " + inner.Path + ", the cgroup watched (cgroup_path), so every record would be left out"},
			{name: "include within exclude", yaml: fmt.Sprintf("cgroup_path: %s\nfilters: {include: {cgroups: [%s]}, exclude: {cgroups: [%s]}}", a.Path, innermost.Path, inner.Path),
				wantErr: "filters.include.cgroups: " + innermost.Path + " lies within " + inner.Path + " of filters.exclude.cgroups, which wins, so including it selects nothing; remove one of them"},
			// What makes sense passes: an exclude inside an include, an
			// include above cgroup_path (it holds every watched socket).
			{name: "exclude within include", yaml: fmt.Sprintf("cgroup_path: %s\nfilters: {include: {cgroups: [%s]}, exclude: {cgroups: [%s]}}", a.Path, inner.Path, innermost.Path)},
			{name: "include above cgroup_path", yaml: fmt.Sprintf("cgroup_path: %s\nfilters: {include: {cgroups: [%s]}}", inner.Path, a.Path)},
			{name: "default cgroup_path", yaml: fmt.Sprintf("filters: {include: {cgroups: [%s]}, exclude: {cgroups: [%s]}}", a.Path, innermost.Path)},
		} {
			t.Run(c.name, func(t *testing.T) {
				err := validateYAML(t, "  "+strings.ReplaceAll(c.yaml, "\n", "\n  ")+"\n")
				if c.wantErr == "" {
					require.NoError(t, err)
					return
				}
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.wantErr)
			})
		}
	})
}
