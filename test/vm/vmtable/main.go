// Command vmtable prints the table of make test-kernels: one row per
// kernel, one column per test package, each cell passed / failed / skipped
// with the time the package took, and below it notes with the message of
// every failure and skip (the skip message says what the kernel lacks).
//
// Below that, for each kernel, what the tests logged of the kernel's
// features (lines with "kernel features:" or "kernel lacks:", from
// bpf's TestKernelFeatures): what the kernel gives and what it lacks.
//
// It reads what test/vm/run-tests.sh and run.sh left in one directory
// per kernel under -results (see test-kernels.sh): NAME.json (test2json
// events), NAME.rc, NAME.seconds, and run.sh's accel, boot-seconds,
// host-seconds and guest-status.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"strconv"
	"strings"
)

// event is a test2json event.
type event struct {
	Action  string
	Test    string
	Output  string
	Elapsed float64
}

// test is one top-level test (its subtests' output included).
type test struct {
	name   string
	action string // pass, fail, skip; "" if it never finished
	output []string
}

type pkgResult struct {
	ran      bool // a result file exists
	action   string
	rc       int
	seconds  string
	tests    []*test
	loose    []string // output outside any test (panics, build-time errors)
	failed   []*test
	skipped  []*test
	passed   int
	unfinish []*test
	facts    []string // "kernel features:" and "kernel lacks:" lines
}

// factMarkers start the lines of what a test found of the kernel.
var factMarkers = []string{"kernel features: ", "kernel lacks: "}

func main() {
	results := flag.String("results", "", "directory with one subdirectory per kernel")
	kernels := flag.String("kernels", "", "kernel names, in row order")
	packages := flag.String("packages", "", "NAME=LABEL pairs, in column order")
	maxLines := flag.Int("lines", 25, "output lines shown per failure")
	flag.Parse()
	if *results == "" || *kernels == "" || *packages == "" {
		flag.Usage()
		os.Exit(2)
	}
	var names, labels []string
	for _, p := range strings.Fields(*packages) {
		name, label, ok := strings.Cut(p, "=")
		if !ok {
			label = name
		}
		names = append(names, name)
		labels = append(labels, label)
	}

	header := append([]string{"kernel", "accel", "boot", "total"}, labels...)
	rows := [][]string{header}
	var notes []string
	note := func(text string) string {
		for i, n := range notes {
			if n == text {
				return fmt.Sprintf("[%d]", i+1)
			}
		}
		notes = append(notes, text)
		return fmt.Sprintf("[%d]", len(notes))
	}

	facts := map[string][]string{}
	for _, k := range strings.Fields(*kernels) {
		dir := filepath.Join(*results, k)
		uname := readTrim(filepath.Join(dir, "uname"))
		label := k
		if uname != "" {
			label = fmt.Sprintf("%s (%s)", k, uname)
		}
		accel := orDash(readTrim(filepath.Join(dir, "accel")))
		boot := "-"
		if s := readTrim(filepath.Join(dir, "boot-seconds")); s != "" {
			boot = secs(s)
		}
		total := "-"
		if f := strings.Fields(readTrim(filepath.Join(dir, "host-seconds"))); len(f) == 2 {
			a, _ := strconv.ParseFloat(f[0], 64)
			b, _ := strconv.ParseFloat(f[1], 64)
			total = fmt.Sprintf("%.0fs", b-a)
		}
		row := []string{label, accel, boot, total}
		guest := readTrim(filepath.Join(dir, "guest-status"))
		for i, name := range names {
			r := load(dir, name)
			row = append(row, cell(k, labels[i], r, guest, note, *maxLines))
			facts[label] = append(facts[label], r.facts...)
		}
		rows = append(rows, row)
	}
	printTable(rows)
	if len(notes) > 0 {
		fmt.Println()
		for i, n := range notes {
			fmt.Printf("[%d] %s\n", i+1, n)
		}
	}
	for _, row := range rows[1:] {
		if f := facts[row[0]]; len(f) > 0 {
			fmt.Printf("\n%s:\n  %s\n", row[0], strings.Join(f, "\n  "))
		}
	}
}

// guestFailure says what run.sh's exit status means when the tests did not
// run in the guest.
func guestFailure(status string) string {
	switch status {
	case "125":
		return "the guest did not boot, crashed or timed out"
	case "126", "127":
		return "the guest could not start the tests: a path it does not see, or a program that is not there"
	}
	return "the tests' runner failed"
}

// cell is the text of one table cell. Failures and skips get one note per
// cell, in which tests with the same message are listed together.
func cell(kernel, pkg string, r *pkgResult, guest string, note func(string) string, maxLines int) string {
	if !r.ran {
		if guest != "" && guest != "0" && guest != "1" {
			return "NOT RUN " + note(fmt.Sprintf("%s: the guest failed (run.sh exit %s: %s; its console is printed above)", kernel, guest, guestFailure(guest)))
		}
		return "not run"
	}
	t := " " + secs(r.seconds)
	total := len(r.tests)
	failed := append(append([]*test{}, r.failed...), r.unfinish...)
	var status string
	switch {
	case r.rc == -1:
		// No exit code: the guest stopped while this package ran.
		ref := note(fmt.Sprintf("%s %s: cut off after %d tests passed, %d failed, in %s (the guest failed: run.sh exit %s; its console is printed above)",
			kernel, pkg, r.passed, len(r.failed), strings.Join(names(r.unfinish), ", "), guest))
		return fmt.Sprintf("CUT OFF, %d passed %s", r.passed, ref)
	case len(failed) > 0 || r.rc != 0 || r.action == "fail":
		status = fmt.Sprintf("FAIL %d/%d", len(failed), total)
	case total == 0:
		return "no tests" + t
	case len(r.skipped) == total:
		status = "SKIP"
	default:
		status = fmt.Sprintf("pass %d", r.passed)
	}
	if len(r.skipped) > 0 {
		status += fmt.Sprintf(" skip %d", len(r.skipped))
	}
	var parts []string
	if len(failed) > 0 {
		parts = append(parts, groups("FAIL", failed, maxLines)...)
	}
	if (r.rc != 0 || r.action == "fail") && len(r.unfinish) > 0 || (r.rc != 0 && len(failed) == 0) {
		parts = append(parts, fmt.Sprintf("exit code %d; output outside the tests:\n%s", r.rc, indent(excerptTail(r.loose, maxLines))))
	}
	if len(r.skipped) > 0 {
		parts = append(parts, groups("skip", r.skipped, maxLines)...)
	}
	if len(parts) == 0 {
		return status + t
	}
	ref := note(fmt.Sprintf("%s %s: %s\n  %s", kernel, pkg, status, strings.Join(parts, "\n  ")))
	return status + " " + ref + t
}

func names(tests []*test) []string {
	var out []string
	for _, t := range tests {
		out = append(out, t.name)
	}
	return out
}

// groups lists tests by message: "FAIL TestA, TestB:" and the message.
func groups(what string, tests []*test, maxLines int) []string {
	byText := map[string][]string{}
	whereOf := map[string]string{}
	var order []string
	for _, ft := range tests {
		text, where := excerpt(ft.output, maxLines)
		if ft.action == "" {
			text = "(did not finish)\n" + text
		}
		if _, ok := byText[text]; !ok {
			order = append(order, text)
			whereOf[text] = where
		}
		byText[text] = append(byText[text], ft.name)
	}
	var out []string
	for _, text := range order {
		names := byText[text]
		head := fmt.Sprintf("%s %s", what, strings.Join(names, ", "))
		// One test: where it failed helps; several: each has its own line.
		if len(names) == 1 && whereOf[text] != "" {
			head += " (" + strings.TrimSuffix(whereOf[text], ":") + ")"
		}
		out = append(out, head+":\n"+indent(text))
	}
	return out
}

// load reads one package's results.
func load(dir, name string) *pkgResult {
	r := &pkgResult{rc: -1}
	f, err := os.Open(filepath.Join(dir, name+".json"))
	if err != nil {
		return r
	}
	defer f.Close()
	r.ran = true
	if rc, err := strconv.Atoi(readTrim(filepath.Join(dir, name+".rc"))); err == nil {
		r.rc = rc
	}
	r.seconds = readTrim(filepath.Join(dir, name+".seconds"))
	byName := map[string]*test{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Test == "" {
			switch e.Action {
			case "pass", "fail", "skip":
				r.action = e.Action
			case "output":
				r.loose = append(r.loose, strings.TrimRight(e.Output, "\n"))
			}
			continue
		}
		top, _, _ := strings.Cut(e.Test, "/")
		t := byName[top]
		if t == nil {
			t = &test{name: top}
			byName[top] = t
			r.tests = append(r.tests, t)
		}
		switch e.Action {
		case "output":
			out := strings.TrimRight(e.Output, "\n")
			t.output = append(t.output, out)
			for _, m := range factMarkers {
				if i := strings.Index(out, m); i >= 0 {
					r.facts = append(r.facts, out[i:])
				}
			}
		case "pass", "fail", "skip":
			if e.Test == top {
				t.action = e.Action
			}
		}
	}
	for _, t := range r.tests {
		switch t.action {
		case "pass":
			r.passed++
		case "fail":
			r.failed = append(r.failed, t)
		case "skip":
			r.skipped = append(r.skipped, t)
		default:
			r.unfinish = append(r.unfinish, t)
		}
	}
	return r
}

var (
	marker = regexp.MustCompile(`^\s*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|FAIL|SKIP)):? `)
	// "file.go:12:" starts a t.Log/t.Error message or a testify report.
	assertion = regexp.MustCompile(`^\s+\S+\.go:\d+:`)
	// testify's "Error Trace:" (and its continuation lines) and "Test:"
	// repeat what the note already says; its "Diff:" repeats
	// expected/actual.
	redundant  = regexp.MustCompile(`^\s+(Error Trace|Test):\s`)
	traceLine  = regexp.MustCompile(`^\s+/\S+\.go:\d+\s*$`)
	diffStart  = regexp.MustCompile(`^\s+Diff:\s*$`)
	fieldStart = regexp.MustCompile(`^\s+(Error|Messages|Test|Error Trace):\s`)
	spaces     = regexp.MustCompile(`[ \t]+`)
)

// excerpt: a test's own messages without go test's markers, testify's
// repetitions and file:line references (so that tests failing the same way
// share one note); a message that subtests repeat is shown once. At most n
// lines of at most 600 characters; the full output is in NAME.out. where is
// the file:line of the first message.
func excerpt(lines []string, n int) (text, where string) {
	var blocks []string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			blocks = append(blocks, strings.Join(cur, "\n"))
			cur = nil
		}
	}
	inDiff := false
	for _, l := range lines {
		if marker.MatchString(l) || strings.TrimSpace(l) == "" {
			continue
		}
		if m := assertion.FindStringIndex(l); m != nil {
			flush()
			inDiff = false
			if where == "" {
				where = strings.TrimSpace(l[:m[1]])
			}
			if rest := strings.TrimSpace(l[m[1]:]); rest != "" {
				cur = append(cur, clip(spaces.ReplaceAllString(rest, " ")))
			}
			continue
		}
		if inDiff && fieldStart.MatchString(l) {
			inDiff = false
		}
		if diffStart.MatchString(l) {
			inDiff = true
		}
		if inDiff || redundant.MatchString(l) || traceLine.MatchString(l) {
			continue
		}
		cur = append(cur, clip(spaces.ReplaceAllString(strings.TrimSpace(l), " ")))
	}
	flush()
	seen := map[string]bool{}
	var keep []string
	for _, b := range blocks {
		if !seen[b] {
			seen[b] = true
			keep = append(keep, strings.Split(b, "\n")...)
		}
	}
	if len(keep) > n {
		keep = append(keep[:n], fmt.Sprintf("... (%d more lines)", len(keep)-n))
	}
	return strings.Join(keep, "\n"), where
}

// excerptTail: the last n lines (a panic or timeout dump ends with what
// matters less, but starts after the tests' own output).
func excerptTail(lines []string, n int) string {
	var keep []string
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			keep = append(keep, clip(l))
		}
	}
	if len(keep) > n {
		keep = keep[:n]
	}
	return strings.Join(keep, "\n")
}

func clip(l string) string {
	l = strings.TrimRight(l, " \t")
	if len(l) > 600 {
		return l[:600] + " ..."
	}
	return l
}

func indent(s string) string {
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

func printTable(rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s  ", width[i], c)
			}
		}
		fmt.Println(strings.TrimRight(b.String(), " "))
	}
}

func secs(s string) string {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1fs", f)
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
