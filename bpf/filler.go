//go:build linux

package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Filler writes copies of one record into the ring buffer of loaded
// Objects. It is for benchmarks of the path from ring buffer to consumer.
type Filler struct {
	objs benchObjects
}

// NewFiller loads the filler program, writing into o's ring buffer.
func (o *Objects) NewFiller(e Event) (*Filler, error) {
	spec, err := loadBench()
	if err != nil {
		return nil, err
	}
	spec.Maps["events"].MaxEntries = o.objs.Events.MaxEntries()
	f := &Filler{}
	if err := spec.LoadAndAssign(&f.objs, &ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{"events": o.objs.Events},
	}); err != nil {
		return nil, fmt.Errorf("load filler: %w", err)
	}
	if err := f.objs.Record.Put(uint32(0), e.raw()); err != nil {
		f.Close()
		return nil, fmt.Errorf("set filler record: %w", err)
	}
	return f, nil
}

// Fill writes n records (fewer if the ring buffer fills up).
func (f *Filler) Fill(n int) error {
	_, err := f.objs.Fill.Run(&ebpf.RunOptions{Data: make([]byte, 64), Repeat: uint32(n)})
	return err
}

// Close frees the filler.
func (f *Filler) Close() error { return f.objs.Close() }
