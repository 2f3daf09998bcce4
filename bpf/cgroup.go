//go:build linux

package bpf

import (
	"bytes"
	"fmt"
	"unsafe"
)

// RecordCgroup is a new cgroup (a CgroupCreated), from the optional
// cgroup_mkdir program.
const RecordCgroup = RecordType(netflowRecordTypeRECORD_CGROUP)

// CgroupRecordSize is the size of struct cgroup_event in bytes.
const CgroupRecordSize = int(unsafe.Sizeof(netflowCgroupEvent{}))

// CgroupPathMax is the most bytes of a path a record holds, with its NUL
// (CGROUP_PATH_MAX).
const CgroupPathMax = len(netflowCgroupEvent{}.Path)

// CgroupCreated is a directory of the cgroup v2 hierarchy that was just
// created. The kernel writes it before any process can enter the cgroup, so
// it precedes the records of the cgroup's sockets in the ring buffer.
type CgroupCreated struct {
	ID       uint64 // the cgroup's id, as in Event.CgroupID
	ParentID uint64
	// Path from the root of the cgroup v2 hierarchy (not of a cgroup
	// namespace): "/system.slice/docker-<id>.scope". Empty when Truncated.
	Path string
	// PathLen is the path's length as the tracepoint gave it (which is at
	// most 1023 bytes).
	PathLen int
	// Truncated: the path did not fit in the record (CgroupPathMax - 1
	// bytes), so Path is left empty: a path cut short names another cgroup.
	Truncated bool
}

// Decode parses one ring buffer record.
func (c *CgroupCreated) Decode(b []byte) error {
	if len(b) < CgroupRecordSize {
		return fmt.Errorf("cgroup record of %d bytes, want %d", len(b), CgroupRecordSize)
	}
	if t := TypeOf(b); t != RecordCgroup {
		return fmt.Errorf("record type %d is not a cgroup", t)
	}
	var r netflowCgroupEvent
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), CgroupRecordSize), b)
	if r.CgroupId == 0 {
		return fmt.Errorf("cgroup record without an id")
	}
	path := unsafe.Slice((*byte)(unsafe.Pointer(&r.Path[0])), len(r.Path))
	n := bytes.IndexByte(path, 0)
	*c = CgroupCreated{ID: r.CgroupId, ParentID: r.ParentId, PathLen: int(r.PathLen), Truncated: r.Truncated != 0}
	switch {
	case n < 0:
		return fmt.Errorf("cgroup %d: path without its NUL", r.CgroupId)
	case c.Truncated:
		if n != CgroupPathMax-1 || c.PathLen < CgroupPathMax {
			return fmt.Errorf("cgroup %d: truncated path of %d bytes, said to be %d", r.CgroupId, n, c.PathLen)
		}
	case n != c.PathLen:
		return fmt.Errorf("cgroup %d: path of %d bytes, said to be %d", r.CgroupId, n, c.PathLen)
	case n < 2 || path[0] != '/':
		return fmt.Errorf("cgroup %d: path %q is not below the root", r.CgroupId, path[:n])
	default:
		c.Path = string(path[:n])
	}
	return nil
}
