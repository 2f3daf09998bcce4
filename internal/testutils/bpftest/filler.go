//go:build linux

package bpftest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/netflowtcpend/netflowtcpend/bpf"
)

// Filler writes copies of one record into a ring buffer of its own, each
// with a cookie of its own, waking the reader as the receiver's programs
// do. A test reads that ring buffer with NewReader, as the receiver reads
// the programs'.
type Filler struct {
	objs struct {
		fillerPrograms
		fillerMaps
		// lost, read with a map lookup: bpf2go's variables would map
		// .bss into the process until Go's garbage collector unmapped
		// it, which the receiver's cycles test would see as a leak.
		BSS *ebpf.Map `ebpf:".bss"`
	}
	lostOffset uint32 // of lost in .bss
}

// NewFiller loads the filler program with a ring buffer of ringSize bytes
// (a power of two and a multiple of the page size), writing e.
func NewFiller(ringSize int, e bpf.Event) (*Filler, error) {
	spec, err := loadFiller()
	if err != nil {
		return nil, err
	}
	spec.Maps["events"].MaxEntries = uint32(ringSize)
	// The loader's default threshold: bpf.DefaultWakeupBytes, at most a
	// quarter of the ring.
	wakeup := min(bpf.DefaultWakeupBytes, ringSize/4)
	if err := spec.Variables["wakeup_shift"].Set(uint32(bits.Len(uint(wakeup)) - 1)); err != nil {
		return nil, fmt.Errorf("set filler wake-up threshold: %w", err)
	}
	f := &Filler{lostOffset: spec.Variables["lost"].Offset}
	if err := spec.LoadAndAssign(&f.objs, nil); err != nil {
		return nil, fmt.Errorf("load filler: %w", err)
	}
	if err := f.objs.Record.Put(uint32(0), e.Encode()); err != nil {
		f.Close()
		return nil, fmt.Errorf("set filler record: %w", err)
	}
	return f, nil
}

// NewReader returns a reader of the filler's ring buffer.
func (f *Filler) NewReader() (*ringbuf.Reader, error) {
	return ringbuf.NewReader(f.objs.Events)
}

// Fill writes n records (fewer if the ring buffer fills up: see Lost).
func (f *Filler) Fill(n int) error {
	_, err := f.objs.Fill.Run(&ebpf.RunOptions{Data: make([]byte, 64), Repeat: uint32(n)})
	return err
}

// Lost is how many records did not fit in the ring buffer.
func (f *Filler) Lost() (uint64, error) {
	bss := make([]byte, f.objs.BSS.ValueSize())
	if err := f.objs.BSS.Lookup(uint32(0), bss); err != nil {
		return 0, err
	}
	return binary.NativeEndian.Uint64(bss[f.lostOffset:]), nil
}

// Close frees the filler.
func (f *Filler) Close() error {
	return errors.Join(f.objs.fillerPrograms.Close(), f.objs.fillerMaps.Close(), f.objs.BSS.Close())
}
