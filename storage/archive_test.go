package storage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tarGz builds an archive from name → content (a "->" prefix makes a
// symlink to the rest).
func tarGz(t *testing.T, entries [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e[0], Mode: 0o644, Size: int64(len(e[1])), Typeflag: tar.TypeReg}
		if target, ok := strings.CutPrefix(e[1], "->"); ok {
			h = &tar.Header{Name: e[0], Linkname: target, Typeflag: tar.TypeSymlink}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			_, _ = tw.Write([]byte(e[1]))
		}
	}
	_ = tw.Close()
	_ = gz.Close()
	return buf.Bytes()
}

func TestReadArchive_RefusesWhatIsNotATenant(t *testing.T) {
	tests := []struct {
		name    string
		entries [][2]string
		want    string
	}{
		{"parent directory", [][2]string{{"pb_data/data.db", "x"}, {"pb_data/../../etc/passwd", "x"}}, "not allowed"},
		{"absolute path", [][2]string{{"/etc/passwd", "x"}}, "not allowed"},
		{"symlink", [][2]string{{"pb_data/data.db", "->/etc/passwd"}}, "not allowed"},
		{"outside pb_data", [][2]string{{"pb_data/data.db", "x"}, {"other/file", "x"}}, "outside pb_data"},
		{"file not under a record", [][2]string{{"pb_data/data.db", "x"}, {"pb_data/storage/loose.txt", "x"}}, "not an uploaded file"},
		{"no data.db", [][2]string{{"pb_data/auxiliary.db", "x"}}, "no pb_data/data.db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := ReadArchive(bytes.NewReader(tarGz(t, tc.entries)), dir, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "etc")); err == nil {
				t.Fatal("something was written outside the directory")
			}
		})
	}
	if _, err := ReadArchive(strings.NewReader("not gzip"), t.TempDir(), nil); err == nil {
		t.Fatal("a non-archive was read")
	}
}

func TestReadArchive_WritesDatabasesAndPassesFiles(t *testing.T) {
	dir := t.TempDir()
	var got []ArchiveEntry
	_, err := ReadArchive(bytes.NewReader(tarGz(t, [][2]string{
		{"pb_data/data.db", "data"}, {"pb_data/auxiliary.db", "aux"}, {"pb_data/types.d.ts", "ignored"},
		{"pb_data/storage/col/rec/a.txt", "file"}, {"pbe-archive.json", `{"tenant":"acme"}`},
	})), dir, func(e ArchiveEntry) error { got = append(got, e); return nil })
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "data.db"))
	if string(b) != "data" || len(got) != 1 || got[0].Path != "col/rec/a.txt" || string(got[0].Data) != "file" {
		t.Fatalf("data.db %q, files %+v", b, got)
	}
	if _, err := os.Stat(filepath.Join(dir, "types.d.ts")); err == nil {
		t.Fatal("an entry outside the layout was written")
	}
}
