//go:build linux

// Command jitlines says in which source lines of the receiver's kernel
// programs the samples of a perf profile fell, where perf itself cannot
// annotate JIT-ed code (Debian's perf is built without libbfd). It reads
// the kernel's line information of each loaded program (the address of the
// JIT-ed code of every source line) while the programs run, then splits the
// profile by program and line:
//
//	jitlines watch -for 75s -o lines.txt &
//	perf record -e cpu-clock -F 5000 -a -g -o perf.data -- sleep 60
//	perf script -i perf.data -F ip,sym | jitlines attribute lines.txt
//
// watch records every program whose name starts with -prefix (netflow_)
// loaded meanwhile: make bench loads its collectors again each round,
// sometimes at an address an earlier program had. attribute takes perf's
// call chains (-g): a sample is counted in the program it was in, at its
// line when the program itself ran, or under the helper it had called.
// Programs of one name must all be the same code (one build, one
// configuration: not make bench's -compare): a sample is placed by address,
// and an address that held two different programs of that name in turn
// gives it the lines of the first. Needs root (program information with
// line numbers).
package main

import (
	"bufio"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: jitlines watch -for D -o FILE | jitlines attribute FILE < perf script output")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "watch":
		fs := flag.NewFlagSet("watch", flag.ExitOnError)
		d := fs.Duration("for", time.Minute, "how long to watch")
		out := fs.String("o", "lines.txt", "where to write the programs' lines")
		prefix := fs.String("prefix", "netflow_", "programs whose name starts with this")
		_ = fs.Parse(os.Args[2:])
		err = watch(*d, *out, *prefix)
	case "attribute":
		if len(os.Args) != 3 {
			err = errors.New("attribute takes the file watch wrote")
			break
		}
		err = attribute(os.Args[2], os.Stdin, os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "jitlines:", err)
		os.Exit(1)
	}
}

// watch writes, for each program loaded during d, a line "P ADDR LEN NAME"
// per function of its JIT-ed image and "L ADDR NAME FILE:LINE" per source
// line.
func watch(d time.Duration, path, prefix string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	seen := map[ebpf.ProgramID]bool{}
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		for id, err := ebpf.ProgramGetNextID(0); err == nil; id, err = ebpf.ProgramGetNextID(id) {
			if seen[id] {
				continue
			}
			if ok, err := writeProgram(w, id, prefix); err != nil {
				return err
			} else if ok {
				seen[id] = true
			}
		}
	}
	return errors.Join(w.Flush(), f.Close())
}

func writeProgram(w io.Writer, id ebpf.ProgramID, prefix string) (bool, error) {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return false, nil // gone meanwhile
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil || !strings.HasPrefix(info.Name, prefix) {
		return false, nil
	}
	ksyms, _ := info.JitedKsymAddrs()
	lens, _ := info.JitedFuncLens()
	jited, _ := info.JitedLineInfos()
	lines, err := info.LineInfos()
	if err != nil {
		return false, fmt.Errorf("program %d (%s): line information: %w", id, info.Name, err)
	}
	if len(lines) != len(jited) || len(ksyms) != len(lens) {
		return false, fmt.Errorf("program %d (%s): %d lines but %d JIT-ed, %d functions but %d lengths",
			id, info.Name, len(lines), len(jited), len(ksyms), len(lens))
	}
	for i, a := range ksyms {
		fmt.Fprintf(w, "P %x %d %s\n", a, lens[i], info.Name)
	}
	for i, a := range jited {
		l := lines[i].Line
		fmt.Fprintf(w, "L %x %s %s:%d\n", a, info.Name, strings.TrimPrefix(l.FileName(), "./"), l.LineNumber())
	}
	return true, nil
}

type span struct {
	start, end uint64
	name       string
}

type line struct {
	addr        uint64
	name, where string
}

// attribute reads perf script's samples (ip and symbol per frame, a blank
// line after each call chain) and prints, per program, its samples by line
// and by helper called.
func attribute(path string, in io.Reader, out io.Writer) error {
	spans, lines, err := readLines(path)
	if err != nil {
		return err
	}
	counts := map[string]map[string]int{}
	total := map[string]int{}
	var chain [][2]string
	flush := func() {
		if prog, where := place(chain, spans, lines); prog != "" {
			if counts[prog] == nil {
				counts[prog] = map[string]int{}
			}
			counts[prog][where]++
			total[prog]++
		}
		chain = chain[:0]
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			flush()
			continue
		}
		sym := ""
		if len(f) > 1 {
			sym = f[1]
		}
		chain = append(chain, [2]string{f[0], sym})
	}
	flush()
	progs := slices.SortedFunc(maps.Keys(total), func(a, b string) int { return cmp.Compare(total[b], total[a]) })
	for _, p := range progs {
		fmt.Fprintf(out, "%s: %d samples\n", p, total[p])
		type row struct {
			where string
			n     int
		}
		var rows []row
		for w, n := range counts[p] {
			rows = append(rows, row{w, n})
		}
		slices.SortFunc(rows, func(a, b row) int { return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.where, b.where)) })
		for _, r := range rows[:min(len(rows), 20)] {
			fmt.Fprintf(out, "  %5d %5.1f%%  %s\n", r.n, 100*float64(r.n)/float64(total[p]), r.where)
		}
	}
	return sc.Err()
}

// place finds the innermost frame of chain in a watched program: its line
// if it is the sample's own frame, else the helper it called. An address
// may have held several programs in turn: the span and the line must be of
// the program perf named (the kernel cuts names to 15 bytes, perf does not).
func place(chain [][2]string, spans []span, lines []line) (prog, where string) {
	for i, fr := range chain {
		sym := strings.SplitN(fr[1], "+", 2)[0]
		if !strings.HasPrefix(sym, "bpf_prog_") {
			continue
		}
		ip, err := strconv.ParseUint(fr[0], 16, 64)
		if err != nil {
			return "", ""
		}
		for _, s := range spans {
			if ip < s.start || ip >= s.end || !strings.Contains(sym, "_"+s.name) {
				continue
			}
			if i > 0 {
				return s.name, "calls " + strings.SplitN(chain[i-1][1], "+", 2)[0]
			}
			j, _ := slices.BinarySearchFunc(lines, ip+1, func(l line, ip uint64) int { return cmp.Compare(l.addr, ip) })
			for j--; j >= 0 && lines[j].addr >= s.start; j-- {
				if lines[j].name == s.name {
					return s.name, lines[j].where
				}
			}
			return s.name, "?"
		}
		return "", "" // not a watched program
	}
	return "", ""
}

func readLines(path string) ([]span, []line, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var spans []span
	var lines []line
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 {
			continue
		}
		addr, err := strconv.ParseUint(f[1], 16, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		switch f[0] {
		case "P":
			n, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", path, err)
			}
			spans = append(spans, span{addr, addr + n, f[3]})
		case "L":
			lines = append(lines, line{addr, f[2], f[3]})
		}
	}
	slices.SortFunc(lines, func(a, b line) int { return cmp.Compare(a.addr, b.addr) })
	return spans, lines, sc.Err()
}
