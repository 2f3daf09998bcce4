package doclinks

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDocumentationLinksResolve is the check itself: every relative link in
// the project's README.md, docs/ and the READMEs under test/ resolves.
func TestDocumentationLinksResolve(t *testing.T) {
	const root = "../.."
	files, err := Files(root)
	require.NoError(t, err)
	require.Contains(t, files, "README.md")
	require.Contains(t, files, "docs/record.md", "the docs pages are checked")
	require.Contains(t, files, "test/README.md", "the READMEs under test/ are checked")

	broken, err := Check(root, files)
	require.NoError(t, err)
	for _, b := range broken {
		t.Errorf("%s", b) // one line per broken link, naming the file, line and reason
	}
	t.Logf("checked the links of %d files", len(files))
}

// TestCheckFindsEachBrokenLink runs the check on a fixture with good links
// of every kind and broken ones of every kind: it must report exactly the
// broken ones, where they are.
func TestCheckFindsEachBrokenLink(t *testing.T) {
	const root = "testdata/site"
	files, err := Files(root)
	require.NoError(t, err)
	assert.Equal(t, []string{"README.md", "docs/page.md", "test/tool/README.md"}, files)

	broken, err := Check(root, files)
	require.NoError(t, err)
	assert.Equal(t, []Broken{
		{File: "README.md", Line: 15, Link: "docs/missing.md", Reason: "no such file or directory: docs/missing.md"},
		{File: "README.md", Line: 16, Link: "docs/page.md#no-such-section", Reason: "no heading or element with anchor #no-such-section in docs/page.md"},
		{File: "README.md", Line: 16, Link: "#nothing", Reason: "no heading or element with anchor #nothing in README.md"},
		{File: "README.md", Line: 17, Link: "../../outside.md", Reason: "points outside the repository"},
		{File: "README.md", Line: 17, Link: "docs/code.go#main", Reason: "an #anchor into a file that is not Markdown: docs/code.go"},
		{File: "README.md", Line: 21, Link: "docs/gone.md", Reason: "no such file or directory: docs/gone.md"},
		{File: "README.md", Line: 23, Link: "docs/missing-ref.md", Reason: "no such file or directory: docs/missing-ref.md"},
		{File: "docs/page.md", Line: 15, Link: "#repeated-2", Reason: "no heading or element with anchor #repeated-2 in docs/page.md"},
		{File: "test/tool/README.md", Line: 3, Link: "../../docs/page.md#the-sectionn", Reason: "no heading or element with anchor #the-sectionn in docs/page.md"},
	}, broken)
	require.NotEmpty(t, broken)
	assert.Equal(t, `README.md:15: link "docs/missing.md": no such file or directory: docs/missing.md`, broken[0].String())
}

func TestSlug(t *testing.T) {
	for _, tc := range []struct{ heading, slug string }{
		{"The record", "the-record"},
		{"Direction, and connections open before start", "direction-and-connections-open-before-start"},
		{"At the gateway: Kubernetes metadata and connection metrics (not run here)", "at-the-gateway-kubernetes-metadata-and-connection-metrics-not-run-here"},
		{"pdata.useProtoPooling: leave it off", "pdatauseprotopooling-leave-it-off"},
		{"RLIMIT_MEMLOCK (kernels before 5.11)", "rlimit_memlock-kernels-before-511"},
		{"make test-kernels and make vm", "make-test-kernels-and-make-vm"},
		{"Two  spaces", "two--spaces"},
		{"Größe über 5 µs", "größe-über-5-µs"},
	} {
		assert.Equal(t, tc.slug, Slug(tc.heading, nil), tc.heading)
	}
}

func TestAnchorsOfRepeatedHeadings(t *testing.T) {
	a, err := Anchors([]byte("# A\n\n## A\n\n## A-1\n\n## A\n\nSetext\n======\n"))
	require.NoError(t, err)
	// github-slugger: a, a-1, then "A-1" is taken, so it becomes a-1-1, then a-2.
	assert.Equal(t, map[string]bool{"a": true, "a-1": true, "a-1-1": true, "a-2": true, "setext": true}, a)
}
