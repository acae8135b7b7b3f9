package main

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium (installed by .ci/run).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PBE_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium on PATH (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH: apt-get install chromium to run the browser test")
	return ""
}

// browser starts a headless chromium for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)), chromedp.NoSandbox, chromedp.Headless,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func (c *customer) ssoURL(t *testing.T, tenant string) string {
	t.Helper()
	r := c.api("POST", "/api/cp/tenants/"+tenant+"/sso", nil)
	mustStatus(t, r, http.StatusCreated)
	var out struct{ URL string }
	r.json(t, &out)
	if !strings.HasPrefix(out.URL, "http://"+tenant+".localhost:") {
		t.Fatalf("SSO URL %q is not on the tenant's host", out.URL)
	}
	return out.URL
}

// TestSSO_BrowserLandsInTheAdminUILoggedIn opens the one-time URL in a
// real headless browser and checks that the tenant's PocketBase admin UI
// shows its collections (only a signed-in superuser gets there), then that
// the ticket cannot be used again or on another tenant's host.
func TestSSO_BrowserLandsInTheAdminUILoggedIn(t *testing.T) {
	s, mail := startAccountsServer(t)
	ctx := browser(t)
	alice := signup(t, s, mail, "alice@example.com", true)
	mustStatus(t, alice.api("POST", "/api/cp/tenants", map[string]string{"id": "alice-one"}), http.StatusCreated)
	mustStatus(t, alice.api("POST", "/api/cp/tenants", map[string]string{"id": "alice-two"}), http.StatusCreated)

	link := alice.ssoURL(t, "alice-one")
	step, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(step, chromedp.Navigate(link)); err != nil {
		t.Fatalf("open %s: %v", link, err)
	}
	hash, err := chromedp.Run(step, chromedp.Poll[string](`location.hash.startsWith("#/collections") && document.querySelector(".app-sidebar, .page-sidebar, aside") ? location.hash : ""`,
		chromedp.WithPollingTimeout(45*time.Second)))
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 500)`))
		t.Fatalf("the admin UI did not open signed in: %v (at %s: %q)", err, loc, body)
	}
	t.Logf("admin UI at %s", hash)
	// The session the page stored is a superuser's of this tenant.
	authJSON, err := chromedp.Run(step, chromedp.Evaluate[string](`localStorage.getItem("__pb_superuser_auth__") || ""`))
	if err != nil || !strings.Contains(authJSON, `"collectionName":"_superusers"`) {
		t.Fatalf("stored admin session: %q %v", authJSON, err)
	}
	status, err := chromedp.Run(step, chromedp.Evaluate[int](`fetch("/api/collections", {headers: {Authorization: JSON.parse(localStorage.getItem("__pb_superuser_auth__")).token}}).then(r => r.status)`,
		chromedp.EvalAwaitPromise))
	if err != nil || status != http.StatusOK {
		t.Fatalf("superuser API call from the page: %d %v", status, err)
	}
	// The tenant's hooks are a collection of its admin UI: opened, it
	// lists their fields as columns.
	if err := chromedp.Do(step, chromedp.Navigate(s.tenantURL("alice-one", "/_/#/collections?collection=_hooks"))); err != nil {
		t.Fatalf("open _hooks in the admin UI: %v", err)
	}
	if _, err := chromedp.Run(step, chromedp.Poll[bool](`document.body.innerText.includes("Collections\n_hooks") && ["name", "code", "enabled", "sort", "kind"].every(w => document.body.innerText.includes("\n" + w + "\n"))`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 800)`))
		t.Fatalf("the admin UI does not show the _hooks collection: %v (%q)", err, body)
	}

	// Used: the same URL fails.
	r := s.do("GET", link, nil)
	if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "invalid, used or expired") {
		t.Fatalf("reused ticket: %d %s", r.status, r.body)
	}
	// Another tenant's host refuses a ticket of alice-one (and uses it up).
	other := alice.ssoURL(t, "alice-one")
	u, _ := url.Parse(other)
	moved := s.tenantURL("alice-two", u.RequestURI())
	mustStatus(t, s.do("GET", moved, nil), http.StatusUnauthorized)
	// A made-up ticket.
	mustStatus(t, s.do("GET", s.tenantURL("alice-one", "/__pbe/sso?ticket=made-up"), nil), http.StatusUnauthorized)
	// Only the owner (or an operator) gets a ticket.
	bob := signup(t, s, mail, "bob@example.com", true)
	mustStatus(t, bob.api("POST", "/api/cp/tenants/alice-one/sso", nil), http.StatusNotFound)
	r = s.api("POST", "/api/cp/tenants/alice-one/sso", nil)
	mustStatus(t, r, http.StatusCreated)
}
