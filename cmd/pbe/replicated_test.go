package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"time"

	"github.com/pbe/pbe/storage"
)

// waitReplicated waits until the object store holds everything tenant id
// committed so far: its replica, restored, has the same content as the
// owner's data.db. (The owner's heartbeat cannot say so: it reports
// Litestream's view of the database, which trails the last commits by up
// to a replication interval, more on a loaded machine.)
func (f *fleet) waitReplicated(id string) {
	f.t.Helper()
	ctx := context.Background()
	tn, err := f.api.GetTenantStrong(ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	local := filepath.Join(f.nodeDir[tn.Node], "tenants", id, "pb_data", "data.db")
	want, err := dbDigest(local)
	if err != nil {
		f.t.Fatalf("read %s's local database: %v", id, err)
	}
	store, err := storage.Open(ctx, f.objects)
	if err != nil {
		f.t.Fatal(err)
	}
	prefix, err := storage.ReplicaPrefix(id, tn.Epoch, "data.db")
	if err != nil {
		f.t.Fatal(err)
	}
	client, err := store.ReplicaClient(prefix)
	if err != nil {
		f.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		out := filepath.Join(f.t.TempDir(), fmt.Sprintf("replica-%d.db", i))
		ok, err := storage.Restore(ctx, client, out)
		if err == nil && ok {
			if got, err := dbDigest(out); err == nil && got == want {
				return
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the object store did not catch up with %s's data.db on %s (last restore: %v, %v)", id, tn.Node, ok, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dbDigest hashes every row of every table of the SQLite database at path.
func dbDigest(path string) (string, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return "", err
	}
	defer db.Close()
	var tables []string
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		return "", err
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return "", err
		}
		tables = append(tables, name)
	}
	rows.Close()
	h := sha256.New()
	for _, t := range tables {
		fmt.Fprintf(h, "table %s\n", t)
		rows, err := db.Query(fmt.Sprintf("SELECT * FROM %q", t))
		if err != nil {
			return "", err
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return "", err
			}
			fmt.Fprintf(h, "%v\n", vals)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
