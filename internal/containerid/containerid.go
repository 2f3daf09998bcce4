// Package containerid finds the container a cgroup belongs to, from the
// cgroup path that container runtimes give their containers.
package containerid

import (
	"regexp"
	"strings"
)

var (
	// systemd cgroup driver: docker-<id>.scope, cri-containerd-<id>.scope,
	// crio-<id>.scope, libpod-<id>.scope. The runtimes' monitors
	// (crio-conmon-<id>, libpod-conmon-<id>) are not containers.
	scope = regexp.MustCompile(`^(?:docker|cri-containerd|crio|libpod)-([0-9a-f]{64})\.scope$`)
	// cgroupfs driver: .../docker/<id>, .../kubepods/burstable/pod<uid>/<id>.
	bare = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// FromCgroupPath returns the id of the container whose cgroup is path (or
// an ancestor of it: podman puts processes in .../libpod-<id>.scope/container),
// or "" when path is not a container's.
func FromCgroupPath(path string) string {
	// Component by component from the end, without splitting (which
	// allocates).
	for rest := path; ; {
		i := strings.LastIndexByte(rest, '/')
		part := rest[i+1:]
		if m := scope.FindStringSubmatch(part); m != nil {
			return m[1]
		}
		if bare.MatchString(part) {
			return part
		}
		if i < 0 {
			return ""
		}
		rest = rest[:i]
	}
}
