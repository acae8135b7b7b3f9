// Package layers holds the test that keeps pbe's packages layered as
// DESIGN.md says: a package depends only on packages below it in the
// design's table, on cluster, or on internal helpers.
package layers

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/pbe/pbe/"

// order is DESIGN.md's package table, top to bottom.
var order = []string{
	"cmd/pbe", "cluster", "controlplane", "controlplane/store", "controlplane/raft", "controlplane/placement",
	"tenantnode", "tenantnode/cache", "tenantnode/hooks", "gateway", "storage", "auth", "email", "health", "metrics",
}

// rank returns a package's row (backends such as storage/s3 share their
// parent's), or -1 for packages outside the table (internal helpers).
func rank(pkg string) int {
	for {
		for i, p := range order {
			if p == pkg {
				return i
			}
		}
		i := strings.LastIndex(pkg, "/")
		if i < 0 || strings.HasPrefix(pkg, "internal") {
			return -1
		}
		pkg = pkg[:i]
	}
}

func TestPackagesDependOnlyDownwards(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		from := strings.TrimPrefix(p.ImportPath, module)
		fr := rank(from)
		for _, imp := range p.Imports {
			to, ok := strings.CutPrefix(imp, module)
			if !ok || to == "cluster" || rank(to) < 0 || fr < 0 {
				continue
			}
			// A backend (storage/s3) may import the package it plugs into.
			if tr := rank(to); tr <= fr && !strings.HasPrefix(from, to+"/") {
				t.Errorf("%s imports %s, which is not below it in DESIGN.md's table", from, to)
			}
		}
	}
}
