// Package doclinks checks that the relative links of the project's
// documentation resolve: README.md, every page under docs/ and the READMEs
// under test/. A link resolves when the file or directory it names exists
// and, for an #anchor into a Markdown file, that file has a heading whose
// GitHub anchor it is (or an HTML element with that id or name).
//
// Absolute links (https:, mailto:, //host) are not checked: the tests run
// without the internet. Markdown is parsed as GitHub does (CommonMark with
// its extensions, by goldmark), so links in code spans and code blocks are
// not links, and reference-style links count.
package doclinks

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/text"
)

// Broken is a link that does not resolve.
type Broken struct {
	File   string // the Markdown file, relative to the root, with slashes
	Line   int    // 1-based line of the link in File (0 if not found)
	Link   string // the link's destination as written
	Reason string // what does not resolve
}

func (b Broken) String() string {
	return fmt.Sprintf("%s:%d: link %q: %s", b.File, b.Line, b.Link, b.Reason)
}

// Files returns the Markdown files whose links the project keeps resolving,
// relative to root: README.md, every .md file under docs/, and every
// README.md under test/ (but not in testdata directories, which hold
// fixtures).
func Files(root string) ([]string, error) {
	files := []string{"README.md"}
	walk := func(dir string, want func(name string) bool) error {
		return filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if name := d.Name(); name == "testdata" || strings.HasPrefix(name, ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if want(d.Name()) {
				rel, err := filepath.Rel(root, p)
				if err != nil {
					return err
				}
				files = append(files, filepath.ToSlash(rel))
			}
			return nil
		})
	}
	if err := walk("docs", func(name string) bool { return strings.HasSuffix(name, ".md") }); err != nil {
		return nil, fmt.Errorf("list docs: %w", err)
	}
	if err := walk("test", func(name string) bool { return name == "README.md" }); err != nil {
		return nil, fmt.Errorf("list test READMEs: %w", err)
	}
	return files, nil
}

// Check parses each file (relative to root) and returns every relative link
// in it that does not resolve, in file order.
func Check(root string, files []string) ([]Broken, error) {
	c := checker{root: root, md: newMarkdown(), anchors: map[string]map[string]bool{}}
	var broken []Broken
	for _, f := range files {
		b, err := c.checkFile(f)
		if err != nil {
			return nil, err
		}
		broken = append(broken, b...)
	}
	return broken, nil
}

func newMarkdown() goldmark.Markdown {
	return goldmark.New(goldmark.WithExtensions(extension.GFM))
}

type checker struct {
	root    string
	md      goldmark.Markdown
	anchors map[string]map[string]bool // by file relative to root
}

func (c *checker) checkFile(file string) ([]Broken, error) {
	source, err := os.ReadFile(filepath.Join(c.root, filepath.FromSlash(file)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	doc := c.md.Parser().Parse(text.NewReader(source))
	var links []string
	err = ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch n := n.(type) {
		case *ast.Link:
			links = append(links, string(n.Destination))
		case *ast.Image:
			links = append(links, string(n.Destination))
		}
		return ast.WalkContinue, nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", file, err)
	}
	var broken []Broken
	lines := lineFinder{source: source, from: map[string]int{}}
	for _, link := range links {
		reason, err := c.resolve(file, link)
		if err != nil {
			return nil, err
		}
		line := lines.find(link) // in order, so that repeated links get their own lines
		if reason != "" {
			broken = append(broken, Broken{File: file, Line: line, Link: link, Reason: reason})
		}
	}
	return broken, nil
}

// resolve says why link, found in file, does not resolve ("" if it does).
func (c *checker) resolve(file, link string) (string, error) {
	if link == "" {
		return "empty link", nil
	}
	u, err := url.Parse(link)
	if err != nil {
		return "not a URL: " + err.Error(), nil
	}
	if u.Scheme != "" || u.Host != "" || strings.HasPrefix(link, "//") {
		return "", nil // absolute: not checked here
	}
	target := file // a bare #anchor is into the file itself
	if u.Path != "" {
		if strings.HasPrefix(u.Path, "/") { // GitHub: from the repository root
			target = path.Clean(strings.TrimPrefix(u.Path, "/"))
		} else {
			target = path.Join(path.Dir(file), u.Path)
		}
		if target == ".." || strings.HasPrefix(target, "../") {
			return "points outside the repository", nil
		}
	}
	info, err := os.Stat(filepath.Join(c.root, filepath.FromSlash(target)))
	if err != nil {
		if os.IsNotExist(err) {
			return "no such file or directory: " + target, nil
		}
		return "", fmt.Errorf("stat %s: %w", target, err)
	}
	if u.Fragment == "" {
		return "", nil
	}
	switch {
	case info.IsDir():
		return "an #anchor on a directory: " + target, nil
	case !strings.HasSuffix(target, ".md"):
		if lineAnchor.MatchString(u.Fragment) { // GitHub's #L12 or #L12-L20 into a source file
			return "", nil
		}
		return "an #anchor into a file that is not Markdown: " + target, nil
	}
	anchors, err := c.anchorsOf(target)
	if err != nil {
		return "", err
	}
	if !anchors[u.Fragment] {
		return fmt.Sprintf("no heading or element with anchor #%s in %s", u.Fragment, target), nil
	}
	return "", nil
}

var lineAnchor = regexp.MustCompile(`^L[0-9]+(-L[0-9]+)?$`)

func (c *checker) anchorsOf(file string) (map[string]bool, error) {
	if a, ok := c.anchors[file]; ok {
		return a, nil
	}
	source, err := os.ReadFile(filepath.Join(c.root, filepath.FromSlash(file)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	a, err := anchors(c.md, source)
	if err != nil {
		return nil, fmt.Errorf("anchors of %s: %w", file, err)
	}
	c.anchors[file] = a
	return a, nil
}

// Anchors returns the #anchors a Markdown document has on GitHub: one per
// heading (see Slug), and the id or name of each HTML element in it.
func Anchors(source []byte) (map[string]bool, error) {
	return anchors(newMarkdown(), source)
}

// htmlAnchor matches the id or name attribute of an HTML element.
var htmlAnchor = regexp.MustCompile(`(?i)\s(?:id|name)\s*=\s*["']([^"']+)["']`)

func anchors(md goldmark.Markdown, source []byte) (map[string]bool, error) {
	doc := md.Parser().Parse(text.NewReader(source))
	found := map[string]bool{}
	seen := map[string]int{}
	err := ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch n := n.(type) {
		case *ast.Heading:
			found[Slug(headingText(n, source), seen)] = true
			return ast.WalkSkipChildren, nil
		case *ast.HTMLBlock:
			for i := range n.Lines().Len() {
				seg := n.Lines().At(i)
				addHTMLAnchors(found, seg.Value(source))
			}
		case *ast.RawHTML:
			for i := range n.Segments.Len() {
				seg := n.Segments.At(i)
				addHTMLAnchors(found, seg.Value(source))
			}
		}
		return ast.WalkContinue, nil
	})
	return found, err
}

func addHTMLAnchors(found map[string]bool, html []byte) {
	for _, m := range htmlAnchor.FindAllSubmatch(html, -1) {
		found[string(m[1])] = true
	}
}

// headingText is a heading's text as GitHub renders it: the text of its
// inline nodes, code spans included, without Markdown syntax.
func headingText(h *ast.Heading, source []byte) string {
	var b strings.Builder
	_ = ast.Walk(h, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch n := n.(type) {
		case *ast.Text:
			b.Write(n.Value(source))
			if n.SoftLineBreak() || n.HardLineBreak() {
				b.WriteByte(' ')
			}
		case *ast.String:
			b.Write(n.Value)
		}
		return ast.WalkContinue, nil
	})
	return b.String()
}

// Slug is the anchor GitHub gives a heading with this text: lower case,
// every character but letters, digits, marks, '-', '_' and spaces removed,
// each space a '-'. seen holds the slugs given so far in the document (and
// how many repeats each had): a repeated one gets "-1", "-2", ... as on
// GitHub (github-slugger). A nil seen ignores repeats.
func Slug(heading string, seen map[string]int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	slug := b.String()
	if seen == nil {
		return slug
	}
	base := slug
	for {
		if _, used := seen[slug]; !used {
			break
		}
		seen[base]++
		slug = fmt.Sprintf("%s-%d", base, seen[base])
	}
	seen[slug] = 0
	return slug
}

// lineFinder finds the line of each link in the source, in document order.
type lineFinder struct {
	source []byte
	from   map[string]int // where to look next for a destination
}

func (l *lineFinder) find(dest string) int {
	if dest == "" {
		return 0
	}
	start := l.from[dest]
	i := bytes.Index(l.source[start:], []byte(dest))
	if i < 0 {
		return 0
	}
	at := start + i
	l.from[dest] = at + len(dest)
	return bytes.Count(l.source[:at], []byte("\n")) + 1
}
