//go:build linux

package bpf

import "fmt"

// Stats are the kernel programs' counters, summed over CPUs.
type Stats struct {
	// Lost counts sockets whose end record did not fit in the ring buffer.
	Lost uint64
	// NoStorage counts failures to allocate socket storage.
	NoStorage uint64
	// DNSLost counts DNS messages that did not fit in the ring buffer.
	DNSLost uint64
	// CgroupLost counts new cgroups whose record did not fit in the ring
	// buffer: only a walk of the cgroup tree can find them.
	CgroupLost uint64
	// TLSLost counts pieces of TLS ClientHellos that did not fit in the
	// ring buffer: their connections may lack a server name.
	TLSLost uint64
}

// Stats reads the kernel counters.
func (o *Objects) Stats() (Stats, error) {
	var s Stats
	for key, dst := range map[netflowStat]*uint64{
		netflowStatSTAT_LOST:        &s.Lost,
		netflowStatSTAT_NO_STORAGE:  &s.NoStorage,
		netflowStatSTAT_DNS_LOST:    &s.DNSLost,
		netflowStatSTAT_CGROUP_LOST: &s.CgroupLost,
		netflowStatSTAT_TLS_LOST:    &s.TLSLost,
	} {
		var perCPU []uint64
		if err := o.objs.Stats.Lookup(uint32(key), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("read kernel stats: %w", err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	return s, nil
}
