package containerid

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

const id = "3f7a9c2b8e1d4f6a5b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a"

func TestFromCgroupPath(t *testing.T) {
	for _, tt := range []struct{ name, path, want string }{
		{"docker, systemd driver", "/system.slice/docker-" + id + ".scope", id},
		{"docker, cgroupfs driver", "/docker/" + id, id},
		{"containerd in kubernetes, systemd driver",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-" + id + ".scope", id},
		{"containerd in kubernetes, cgroupfs driver",
			"/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/" + id, id},
		{"cri-o", "/kubepods.slice/kubepods-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/crio-" + id + ".scope", id},
		{"cri-o monitor is not a container", "/system.slice/crio-conmon-" + id + ".scope", ""},
		{"podman, rootful", "/machine.slice/libpod-" + id + ".scope", id},
		{"podman, rootless, process in the container subgroup",
			"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id + ".scope/container", id},
		{"podman monitor is not a container", "/machine.slice/libpod-conmon-" + id + ".scope", ""},
		{"a system service", "/system.slice/sshd.service", ""},
		{"the root", "/", ""},
		{"a short hex name is no id", "/docker/3f7a9c2b", ""},
		{"upper case is no id", "/docker/" + "3F7A9C2B8E1D4F6A5B0C9D8E7F6A5B4C3D2E1F0A9B8C7D6E5F4A3B2C1D0E9F8A", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, FromCgroupPath(tt.path))
		})
	}
}
