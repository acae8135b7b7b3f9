package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane"
	"github.com/pbe/pbe/internal/s3test"
)

func TestArchiving_IdleTenantIsArchivedAndComesBackOnItsNextRequest(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, func(o *serveOptions) {
		o.archiveAfter = 2 * time.Second
		o.archiveTick = 200 * time.Millisecond
		o.idleTimeout = 500 * time.Millisecond
	})
	token := s.createTenant("sleepy")
	s.createPostsCollection("sleepy", token)
	s.createPost("sleepy", "before the nap")

	// Idle: evicted, then archived.
	type record struct {
		ArchivedAt *time.Time `json:"archived_at"`
		Node       string
	}
	var tn record
	deadline := time.Now().Add(60 * time.Second)
	for tn.ArchivedAt == nil {
		if time.Now().After(deadline) {
			t.Fatal("the idle tenant was never archived")
		}
		time.Sleep(100 * time.Millisecond)
		r := s.api("GET", "/api/cp/tenants/sleepy", nil)
		mustStatus(t, r, http.StatusOK)
		tn = record{}
		r.json(t, &tn)
	}
	if tn.Node != "" {
		ev := s.api("GET", "/api/cp/events?after=00000000000000000000-0000", nil)
		t.Fatalf("an archived tenant is still on node %q: %s", tn.Node, ev.body)
	}
	// Its history is one archive; the replicas and the local copy go (the
	// record says archived first, then the archiver trims).
	objects := filepath.Join(dir, "objects", "tenants", "sleepy")
	if _, err := os.Stat(filepath.Join(objects, "backups", "archived.tar.gz")); err != nil {
		t.Fatalf("no archive: %v", err)
	}
	waitFor(t, "the replica history and the local copy to be removed", func() bool {
		_, replicas := os.Stat(filepath.Join(objects, "litestream"))
		_, local := os.Stat(filepath.Join(dir, "tenants", "sleepy"))
		return os.IsNotExist(replicas) && os.IsNotExist(local)
	})
	r := s.api("GET", "/api/cp/events?types=tenant.archived&after=00000000000000000000-0000", nil)
	if !strings.Contains(string(r.body), `"sleepy"`) {
		t.Fatalf("no tenant.archived event: %s", r.body)
	}

	// The next request opens it from the archive, transparently.
	if got := strings.Join(s.postTitles("sleepy"), ","); got != "before the nap" {
		t.Fatalf("after unarchiving: %q", got)
	}
	r = s.api("GET", "/api/cp/tenants/sleepy", nil)
	tn = record{}
	r.json(t, &tn)
	if tn.ArchivedAt != nil || tn.Node == "" {
		t.Fatalf("tenant after its first request: %s", r.body)
	}
	s.createPost("sleepy", "after the nap")

	// By hand: archive now, unarchive now.
	mustStatus(t, s.api("POST", "/api/cp/tenants/sleepy/archive", nil), http.StatusOK)
	r = s.api("POST", "/api/cp/tenants/sleepy/unarchive", nil)
	mustStatus(t, r, http.StatusOK)
	if got := strings.Join(s.postTitles("sleepy"), ","); got != "before the nap,after the nap" {
		t.Fatalf("after archiving by hand: %q", got)
	}
}

// TestArchiving_StateArchived checks that the API shows an archived
// tenant in state "archived" (and lists it under ?state=archived), while
// tenant nodes still read it as active, which is what lets its next
// request open it.
func TestArchiving_StateArchived(t *testing.T) {
	const secret = "cluster-secret-for-the-test"
	s := startServer(t, t.TempDir(), func(o *serveOptions) { o.clusterSecret = secret })
	s.createTenant("sleepy")
	s.createTenant("awake")
	state := func(id string) string {
		r := s.api("GET", "/api/cp/tenants/"+id, nil)
		mustStatus(t, r, http.StatusOK)
		var tn struct{ State string }
		r.json(t, &tn)
		return tn.State
	}
	list := func(query string) string {
		r := s.api("GET", "/api/cp/tenants"+query, nil)
		mustStatus(t, r, http.StatusOK)
		var out struct{ Items []struct{ ID, State string } }
		r.json(t, &out)
		var ids []string
		for _, it := range out.Items {
			ids = append(ids, it.ID+":"+it.State)
		}
		slices.Sort(ids)
		return strings.Join(ids, ",")
	}

	r := s.api("POST", "/api/cp/tenants/sleepy/archive", nil)
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `"state":"archived"`) {
		t.Fatalf("archive answer: got %s, want state archived", r.body)
	}
	if got := state("sleepy"); got != "archived" {
		t.Fatalf("after archive: got state %q, want archived", got)
	}
	for query, want := range map[string]string{
		"":                "awake:active,sleepy:archived",
		"?state=archived": "sleepy:archived",
		"?state=active":   "awake:active",
		"?state=all":      "awake:active,sleepy:archived",
		"?state=deleted":  "",
	} {
		if got := list(query); got != want {
			t.Errorf("GET /api/cp/tenants%s: got %q, want %q", query, got, want)
		}
	}
	mustStatus(t, s.api("GET", "/api/cp/tenants?state=asleep", nil), http.StatusBadRequest)
	var listed []controlplane.Tenant
	s.mustCLI(t, &listed, "tenant", "list", "--state", "archived", "--json")
	if len(listed) != 1 || listed[0].ID != "sleepy" || listed[0].State != cluster.TenantArchived {
		t.Fatalf("pbe tenant list --state archived: got %+v, want sleepy archived", listed)
	}
	// Tenant nodes read the stored record: active, with archived_at.
	tn, err := controlplane.NewHTTPClient("http://127.0.0.1:"+s.port, secret).Tenant(context.Background(), "sleepy")
	if err != nil || tn.State != cluster.TenantActive || tn.ArchivedAt == nil {
		t.Fatalf("a node's read: got state %q, archived_at %v (%v), want active and archived", tn.State, tn.ArchivedAt, err)
	}
	metrics := s.scrapeMetrics(t, s.base()+"/metrics", "Authorization", "Bearer "+secret)
	for _, want := range []string{`pbe_registry_tenants{state="active"} 1`, `pbe_registry_tenants{state="archived"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics: no %s", want)
		}
	}

	mustStatus(t, s.api("POST", "/api/cp/tenants/sleepy/unarchive", nil), http.StatusOK)
	if got := state("sleepy"); got != "active" {
		t.Fatalf("after unarchive: got state %q, want active", got)
	}
	if got := list("?state=archived"); got != "" {
		t.Fatalf("archived tenants after unarchive: got %q, want none", got)
	}
}

// TestArchiving_ArchiveInStorageClass archives a tenant into a real
// S3-compatible store (versitygw, behind a proxy that records the storage
// class of each upload): the archive is written in --archive-storage-class
// (STANDARD_IA by default, none when empty, the default class when the
// store refuses it), and the tenant comes back from it.
func TestArchiving_ArchiveInStorageClass(t *testing.T) {
	srv := s3test.Start(t)
	for _, tc := range []struct {
		name   string
		class  *string // nil: the flag's default
		refuse bool
		want   []string
	}{
		{"default", nil, false, []string{"STANDARD_IA"}},
		{"empty", ptr(""), false, []string{""}},
		{"refused by the store", ptr("ONEZONE_IA"), true, []string{"ONEZONE_IA", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := s3test.StartProxy(t, srv)
			proxy.RefuseClasses(tc.refuse)
			s := startServer(t, t.TempDir(), func(o *serveOptions) {
				o.objects = proxy.URL(t, "archives-"+strings.ReplaceAll(tc.name, " ", "-"))
				if tc.class != nil {
					o.archiveStorageClass = *tc.class
				}
			})
			token := s.createTenant("sleepy")
			s.createPostsCollection("sleepy", token)
			s.createPost("sleepy", "before the nap")
			mustStatus(t, s.api("POST", "/api/cp/tenants/sleepy/archive", nil), http.StatusOK)
			var got []string
			for _, put := range proxy.Puts() {
				if strings.HasSuffix(put.Key, "/tenants/sleepy/backups/archived.tar.gz") {
					got = append(got, put.Class)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("storage classes of the archive's uploads: got %q, want %q", got, tc.want)
			}
			if titles := strings.Join(s.postTitles("sleepy"), ","); titles != "before the nap" {
				t.Fatalf("after unarchiving: got %q, want %q", titles, "before the nap")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
