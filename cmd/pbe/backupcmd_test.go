package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane"
)

// cli runs pbe with args as the operator of s and returns what it printed
// on standard output.
func (s *testServer) cli(args ...string) (string, error) {
	return runPBE(append(args, s.cliFlags()...)...)
}

// runPBE runs the pbe command line in the test process and returns what
// it printed on standard output.
func runPBE(args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// cliFlags point a pbe command at s as its operator.
func (s *testServer) cliFlags() []string {
	return []string{"--server", "http://127.0.0.1:" + s.port, "--token", s.token}
}

// mustCLI is cli that fails the test on an error and decodes the output
// as JSON into v (when not nil).
func (s *testServer) mustCLI(t *testing.T, v any, args ...string) string {
	t.Helper()
	out, err := s.cli(args...)
	if err != nil {
		t.Fatalf("pbe %s: %v", strings.Join(args, " "), err)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("pbe %s printed %q: %v", strings.Join(args, " "), out, err)
		}
	}
	return out
}

func TestBackupCmd_RestoresBackupsExportImportAndArchive(t *testing.T) {
	s := startServer(t, t.TempDir(), nil)
	point := shopWithHistory(t, s, func(method, path string, body any) response { return s.api(method, path, body) })
	titles := func(id string) string { return strings.Join(s.postTitles(id), ",") }

	t.Run("points shows the window", func(t *testing.T) {
		var rp controlplane.RestorePoints
		s.mustCLI(t, &rp, "backup", "points", "shop")
		if rp.Tenant != "shop" || rp.From == nil || rp.To == nil || !rp.From.Before(point) || !rp.To.After(point) || len(rp.Epochs) == 0 {
			t.Fatalf("got window %+v, want one from before %s to after it", rp, point)
		}
	})

	t.Run("bad flags are usage errors and change nothing", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "a.tar.gz")
		if err := os.WriteFile(archive, []byte("not read"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"backup", "restore", "shop"},
			{"backup", "restore", "shop", "--at", "yesterday"},
			{"backup", "restore", "shop", "--at", "2026-11-29 10:00:00", "--fork", "shop-bad"},
			{"backup", "restore", "--at", point.Format(time.RFC3339Nano)},
			{"backup", "import", archive},
			{"backup", "delete", "shop"},
		} {
			if code := run(context.Background(), append(args, s.cliFlags()...)); code != exitUsage {
				t.Errorf("pbe %s: got exit code %d, want %d", strings.Join(args, " "), code, exitUsage)
			}
		}
		if got := titles("shop"); got != "A,B,C" {
			t.Fatalf("after refused commands: got %q, want %q", got, "A,B,C")
		}
		mustStatus(t, s.api("GET", "/api/cp/tenants/shop-bad", nil), http.StatusNotFound)
	})

	t.Run("restore --fork makes a new tenant from the moment", func(t *testing.T) {
		var res controlplane.RestoreResult
		s.mustCLI(t, &res, "backup", "restore", "shop", "--at", point.Format(time.RFC3339Nano), "--fork", "shop-fork")
		if res.Tenant.ID != "shop-fork" || res.Source != "shop" {
			t.Fatalf("got %+v, want tenant shop-fork from shop", res)
		}
		if got := titles("shop-fork"); got != "A,B" {
			t.Fatalf("fork: got %q, want %q", got, "A,B")
		}
		if got := titles("shop"); got != "A,B,C" {
			t.Fatalf("source after the fork: got %q, want %q", got, "A,B,C")
		}
	})

	t.Run("restore --at restores in place", func(t *testing.T) {
		var res controlplane.RestoreResult
		s.mustCLI(t, &res, "backup", "restore", "shop", "--at", point.Format(time.RFC3339Nano))
		if res.Tenant.ID != "shop" || res.Undo == nil || res.Undo.Timestamp.Before(point) {
			t.Fatalf("got %+v, want shop with an undo point", res)
		}
		if got := titles("shop"); got != "A,B" {
			t.Fatalf("after the restore: got %q, want %q", got, "A,B")
		}
	})

	t.Run("named backup: create, list, restore, delete", func(t *testing.T) {
		var b controlplane.BackupInfo
		s.mustCLI(t, &b, "backup", "create", "shop", "--name", "before-d")
		if b.Name != "before-d" || b.Size == 0 {
			t.Fatalf("got backup %+v, want before-d with a size", b)
		}
		if got := strings.Fields(s.mustCLI(t, nil, "backup", "list", "shop")); !slices.Contains(got, "before-d") {
			t.Fatalf("got backups %q, want before-d among them", got)
		}
		s.createPost("shop", "D")
		s.mustCLI(t, nil, "backup", "restore-named", "shop", "before-d")
		if got := titles("shop"); got != "A,B" {
			t.Fatalf("after restoring before-d: got %q, want %q", got, "A,B")
		}
		s.mustCLI(t, nil, "backup", "delete", "shop", "before-d")
		var left []controlplane.BackupInfo
		s.mustCLI(t, &left, "backup", "list", "shop", "--json")
		if len(left) != 0 {
			t.Fatalf("after delete: got backups %+v, want none", left)
		}
	})

	t.Run("export to a file, import as a new tenant", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "shop.tar.gz")
		var exp struct{ Bytes int64 }
		s.mustCLI(t, &exp, "backup", "export", "shop", "-o", file)
		fi, err := os.Stat(file)
		if err != nil || fi.Size() != exp.Bytes || exp.Bytes == 0 {
			t.Fatalf("export file: %v (printed %d bytes)", err, exp.Bytes)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("got %d files in the output directory, want the archive alone", len(entries))
		}
		var tn controlplane.Tenant
		s.mustCLI(t, &tn, "backup", "import", file, "--id", "shop-imported")
		if tn.ID != "shop-imported" {
			t.Fatalf("imported: got tenant %q, want shop-imported", tn.ID)
		}
		if got := titles("shop-imported"); got != "A,B" {
			t.Fatalf("imported posts: got %q, want %q", got, "A,B")
		}
		// To standard output: the archive itself.
		out := s.mustCLI(t, nil, "backup", "export", "shop", "-o", "-")
		if !strings.HasPrefix(out, "\x1f\x8b") {
			t.Fatalf("export to standard output: got %q..., want a gzip stream", out[:min(len(out), 16)])
		}
		// From standard input, as from a pipe: export | import.
		root := newRootCmd()
		var printed bytes.Buffer
		root.SetIn(strings.NewReader(out))
		root.SetOut(&printed)
		root.SetErr(io.Discard)
		root.SetArgs(append([]string{"backup", "import", "-", "--id", "shop-piped"}, s.cliFlags()...))
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("import from standard input: %v", err)
		}
		if got := titles("shop-piped"); got != "A,B" {
			t.Fatalf("posts imported from standard input: got %q, want %q", got, "A,B")
		}
	})

	t.Run("archive and unarchive", func(t *testing.T) {
		var tn controlplane.Tenant
		s.mustCLI(t, &tn, "tenant", "archive", "shop")
		if tn.State != cluster.TenantArchived || tn.ArchivedAt == nil || tn.Node != "" {
			t.Fatalf("after archive: got state %q, archived_at %v on node %q, want archived on none", tn.State, tn.ArchivedAt, tn.Node)
		}
		tn = controlplane.Tenant{}
		s.mustCLI(t, &tn, "tenant", "unarchive", "shop")
		if tn.State != cluster.TenantActive || tn.ArchivedAt != nil || tn.Node == "" {
			t.Fatalf("after unarchive: got state %q, archived_at %v on node %q, want active on a node", tn.State, tn.ArchivedAt, tn.Node)
		}
		if got := titles("shop"); got != "A,B" {
			t.Fatalf("after unarchive: got %q, want %q", got, "A,B")
		}
	})
}
