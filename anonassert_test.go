package federation_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// anonAssertions returns, as "file:line: text", every type assertion to an
// anonymous interface type in src: x.(interface{ ... }), and a type
// switch case that names one. Optional capabilities are named interfaces
// in package core, found once where the node is built (see
// core.Unwrapper); an anonymous assertion buried in a helper is how a
// wrapped store silently lost its device table and audit log.
func anonAssertions(fset *token.FileSet, name string, src []byte) ([]string, error) {
	f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var found []string
	report := func(n ast.Node) {
		p := fset.Position(n.Pos())
		found = append(found, p.String()+": "+string(src[p.Offset:fset.Position(n.End()).Offset]))
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.TypeAssertExpr:
			if _, anon := ast.Unparen(n.Type).(*ast.InterfaceType); anon {
				report(n)
			}
		case *ast.TypeSwitchStmt:
			for _, c := range n.Body.List {
				for _, typ := range c.(*ast.CaseClause).List {
					if _, anon := ast.Unparen(typ).(*ast.InterfaceType); anon {
						report(typ)
					}
				}
			}
		}
		return true
	})
	return found, nil
}

// TestAnonAssertionsDetected checks the checker below on known input, so
// that it cannot pass by finding nothing.
func TestAnonAssertionsDetected(t *testing.T) {
	const src = `package p

import "database/sql"

type named interface{ DB() *sql.DB }

func f(x any) {
	_, _ = x.(interface{ DB() *sql.DB })
	_, _ = x.((interface {
		Close() error
	}))
	_, _ = x.(named)
	switch x.(type) {
	case named, interface{ Close() error }:
	}
	var _ interface{ DB() *sql.DB }
}
`
	got, err := anonAssertions(token.NewFileSet(), "p.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"p.go:8:9: x.(interface{ DB() *sql.DB })",
		"p.go:9:9: x.((interface {\n\t\tClose() error\n\t}))",
		"p.go:14:14: interface{ Close() error }",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("found\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestNoAnonymousInterfaceAssertion parses every .go file of the module
// (tests, commands and examples included; testdata and hidden directories
// are not Go code of the module) and fails on any type assertion to an
// anonymous interface type. Use a named interface (core.SQLStore,
// core.BackupStore, core.ManyGetter, or a small named one in the package
// that needs it) instead.
func TestNoAnonymousInterfaceAssertion(t *testing.T) {
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && (strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		found, err := anonAssertions(fset, path, src)
		if err != nil {
			return err
		}
		files++
		for _, f := range found {
			t.Errorf("anonymous interface type assertion: %s", f)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("parsed only %d .go files: not run from the module root?", files)
	}
}
