//go:build linux

package bpftest

import (
	"fmt"
	"math/bits"

	"github.com/cilium/ebpf"

	"github.com/netflowtcpend/netflowtcpend/bpf"
	"github.com/netflowtcpend/netflowtcpend/internal/testutils/objaccess"
)

// Filler writes copies of one record into the ring buffer of loaded
// Objects, each with a cookie of its own.
type Filler struct {
	objs fillerObjects
}

// NewFiller loads the filler program, writing e into o's ring buffer.
func NewFiller(o *bpf.Objects, e bpf.Event) (*Filler, error) {
	spec, err := loadFiller()
	if err != nil {
		return nil, err
	}
	events := objaccess.Of(o).Events
	spec.Maps["events"].MaxEntries = events.MaxEntries()
	// The loader's default threshold: bpf.DefaultWakeupBytes, at most a
	// quarter of the ring.
	wakeup := min(bpf.DefaultWakeupBytes, int(events.MaxEntries())/4)
	if err := spec.Variables["wakeup_shift"].Set(uint32(bits.Len(uint(wakeup)) - 1)); err != nil {
		return nil, fmt.Errorf("set filler wake-up threshold: %w", err)
	}
	f := &Filler{}
	if err := spec.LoadAndAssign(&f.objs, &ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{"events": events},
	}); err != nil {
		return nil, fmt.Errorf("load filler: %w", err)
	}
	if err := f.objs.Record.Put(uint32(0), e.Encode()); err != nil {
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
