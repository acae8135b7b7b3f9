package storage

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/superfly/ltx"

	"github.com/pbe/pbe/internal/atomicfile"
)

// errUnsupportedPlan makes restoreDirect leave a restore to Litestream.
var errUnsupportedPlan = errors.New("restore plan needs Litestream's restore")

// restoreDirect restores the replica behind client, at timestamp (zero: the
// newest), to outputPath by applying the restore plan's LTX files one after
// another: the first, a snapshot, decoded straight into the file; each
// later one's pages written over it; the file cut to each file's commit
// size. Litestream's own restore compacts the whole plan into one stream
// first, which decompresses, checksums and compresses every page once more
// than this. The result is checked against the last file's post-apply
// checksum (every file's own checksums are checked as it is decoded), then
// made durable and checked with PRAGMA integrity_check. It returns
// litestream.ErrNoSnapshots (or ErrTxNotAvailable) when there is nothing to
// restore and errUnsupportedPlan, having written nothing, for plans it does
// not handle.
func restoreDirect(ctx context.Context, client litestream.ReplicaClient, outputPath string, timestamp time.Time) error {
	infos, err := litestream.CalcRestorePlan(ctx, client, 0, timestamp, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if len(infos) == 0 || infos[0].MinTXID != 1 {
		return errUnsupportedPlan
	}
	if _, err := os.Stat(outputPath); err == nil {
		return fmt.Errorf("cannot restore, output path already exists: %s", outputPath)
	}
	if err := os.MkdirAll(filepath.Dir(outputPath), 0o750); err != nil {
		return err
	}
	tmp := outputPath + ".tmp"
	defer func() { _ = os.Remove(tmp) }()
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()

	var hdr ltx.Header
	var trailer ltx.Trailer
	for i, info := range infos {
		if hdr, trailer, err = applyLTX(ctx, client, info, f, i == 0, hdr.PageSize); err != nil {
			return err
		}
	}
	if len(infos) > 1 && !hdr.NoChecksum() {
		got, err := databaseChecksum(f, hdr.PageSize, hdr.Commit)
		if err != nil {
			return err
		}
		if got != trailer.PostApplyChecksum {
			return fmt.Errorf("restored database checksum %s does not match the replica's %s", got, trailer.PostApplyChecksum)
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, outputPath); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(filepath.Dir(outputPath)); err != nil {
		return err
	}
	if err := integrityCheck(ctx, outputPath); err != nil {
		_ = os.Remove(outputPath)
		return err
	}
	return nil
}

// applyLTX decodes one file of a restore plan into f: a snapshot as the
// whole database, a later file page by page over it. It returns the file's
// header and trailer once its checksums have been verified.
func applyLTX(ctx context.Context, client litestream.ReplicaClient, info *ltx.FileInfo, f *os.File, first bool, pageSize uint32) (ltx.Header, ltx.Trailer, error) {
	rc, err := client.OpenLTXFile(ctx, info.Level, info.MinTXID, info.MaxTXID, 0, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ltx.Header{}, ltx.Trailer{}, errUnsupportedPlan // removed by compaction meanwhile
		}
		return ltx.Header{}, ltx.Trailer{}, fmt.Errorf("open %s: %w", ltx.FormatFilename(info.MinTXID, info.MaxTXID), err)
	}
	defer func() { _ = rc.Close() }()
	dec := ltx.NewDecoder(bufio.NewReaderSize(rc, restoreReadBuffer))
	if first {
		w := bufio.NewWriterSize(f, restoreWriteBuffer)
		if err := dec.DecodeDatabaseTo(w); err != nil {
			return ltx.Header{}, ltx.Trailer{}, fmt.Errorf("decode snapshot %s: %w", ltx.FormatFilename(info.MinTXID, info.MaxTXID), err)
		}
		if err := w.Flush(); err != nil {
			return ltx.Header{}, ltx.Trailer{}, err
		}
		return dec.Header(), dec.Trailer(), nil
	}
	if err := dec.DecodeHeader(); err != nil {
		return ltx.Header{}, ltx.Trailer{}, err
	}
	hdr := dec.Header()
	if hdr.PageSize != pageSize {
		return hdr, ltx.Trailer{}, fmt.Errorf("%s: page size %d, the database's is %d", ltx.FormatFilename(info.MinTXID, info.MaxTXID), hdr.PageSize, pageSize)
	}
	var ph ltx.PageHeader
	data := make([]byte, hdr.PageSize)
	for {
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return hdr, ltx.Trailer{}, fmt.Errorf("decode %s: %w", ltx.FormatFilename(info.MinTXID, info.MaxTXID), err)
		}
		if _, err := f.WriteAt(data, int64(ph.Pgno-1)*int64(hdr.PageSize)); err != nil {
			return hdr, ltx.Trailer{}, err
		}
	}
	if err := dec.Close(); err != nil {
		return hdr, ltx.Trailer{}, fmt.Errorf("verify %s: %w", ltx.FormatFilename(info.MinTXID, info.MaxTXID), err)
	}
	if err := f.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
		return hdr, ltx.Trailer{}, err
	}
	return hdr, dec.Trailer(), nil
}

// restoreWriteBuffer batches a snapshot's pages into larger writes.
const restoreWriteBuffer = 1 << 20

// databaseChecksum is LTX's rolling checksum of the first commit pages of
// the database in f (the lock page, which LTX never stores, left out).
func databaseChecksum(f *os.File, pageSize, commit uint32) (ltx.Checksum, error) {
	hdr := ltx.Header{PageSize: pageSize}
	lock := hdr.LockPgno()
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, int64(commit)*int64(pageSize)), restoreReadBuffer)
	h := ltx.NewHasher()
	data := make([]byte, pageSize)
	var sum ltx.Checksum
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if _, err := io.ReadFull(r, data); err != nil {
			return 0, fmt.Errorf("read page %d: %w", pgno, err)
		}
		if pgno == lock {
			continue
		}
		sum = ltx.ChecksumFlag | (sum ^ ltx.ChecksumPageWithHasher(h, pgno, data))
	}
	return sum, nil
}

// integrityCheck runs PRAGMA integrity_check on the database at path (the
// full check: unlike quick_check it also checks that every index matches
// its table) and removes the shared-memory and WAL files the check leaves.
func integrityCheck(ctx context.Context, path string) error {
	return pragmaCheck(ctx, path, "integrity_check")
}

func pragmaCheck(ctx context.Context, path, pragma string) error {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	var res string
	err = db.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&res)
	_ = db.Close()
	_ = os.Remove(path + "-shm")
	_ = os.Remove(path + "-wal")
	if err != nil {
		return fmt.Errorf("integrity check of %s: %w", path, err)
	}
	if res != "ok" {
		return fmt.Errorf("integrity check of %s failed: %s", path, res)
	}
	return nil
}
