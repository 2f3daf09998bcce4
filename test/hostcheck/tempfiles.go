//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// tempFiles returns the entries of runTemp, the TMPDIR that the command ran
// with (everything there is the run's: ocb's otelcol-distribution*
// directories, tests' temporary directories, image storage), and the paths
// of sharedPaths that exist: where container tools keep state outside
// TMPDIR.
func tempFiles(runTemp string, sharedPaths []string) ([]object, error) {
	var objs []object
	if runTemp != "" {
		entries, err := os.ReadDir(runTemp)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			path := filepath.Join(runTemp, e.Name())
			what := "a file"
			if e.IsDir() {
				n, _ := os.ReadDir(path)
				what = fmt.Sprintf("a directory of %d entries", len(n))
			}
			objs = append(objs, object{kind: kindRunTemp, id: path,
				detail: what + " in the run's TMPDIR, which hostcheck removes; without hostcheck it stays in " + os.TempDir()})
		}
	}
	for _, glob := range sharedPaths {
		matches, err := filepath.Glob(glob)
		if err != nil {
			return objs, fmt.Errorf("%s: %w", glob, err)
		}
		for _, m := range matches {
			objs = append(objs, object{kind: kindToolState, id: m, detail: "remove: rm -r " + m})
		}
	}
	return objs, nil
}
