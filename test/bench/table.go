//go:build linux

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// row is one figure of the table.
type row struct {
	figure             string
	measured, baseline []float64 // samples, one per round
	// ratios, when set, are measured/baseline round by round (each pair
	// measured in the same round, next to each other): the ratio column
	// gives their median and range instead of the ratio of the medians.
	ratios         []float64
	unit, baseName string
	target         string
	met            string // "yes", "NO" or ""
	extra          string
	text           string // instead of numbers
}

type table struct{ rows []row }

func (t *table) add(r row) { t.rows = append(t.rows, r) }

func metIf(applies, ok bool) string {
	switch {
	case !applies:
		return ""
	case ok:
		return "yes"
	default:
		return "NO"
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summary is "median [min..max]" or, for one sample, the value.
func summary(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	if len(xs) == 1 {
		return num(xs[0])
	}
	return fmt.Sprintf("%s [%s..%s]", num(median(xs)), num(slices.Min(xs)), num(slices.Max(xs)))
}

func num(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0f", v)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func (t *table) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tmeasured: median [range]\tbaseline\tratio\ttarget\tmet\tnote")
	fmt.Fprintln(tw, strings.Repeat("-", 6)+"\t"+strings.Repeat("-", 8)+"\t"+strings.Repeat("-", 8)+"\t-----\t------\t---\t----")
	for _, r := range t.rows {
		measured, baseline, ratio := r.text, "", ""
		if r.text == "" {
			measured = summary(r.measured) + " " + r.unit
			if len(r.baseline) > 0 {
				baseline = summary(r.baseline) + " " + r.unit + " (" + r.baseName + ")"
				if b := median(r.baseline); b != 0 {
					ratio = fmt.Sprintf("%.3f", median(r.measured)/b)
				}
			}
			if len(r.ratios) > 0 {
				ratio = fmt.Sprintf("%.3f [%.3f..%.3f]", median(r.ratios), slices.Min(r.ratios), slices.Max(r.ratios))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.figure, measured, baseline, ratio, r.target, r.met, r.extra)
	}
	tw.Flush()
}
