package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pbeBinary builds the pbe binary once per test run.
var pbeBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pbe-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "pbe")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// proc is a pbe serve process.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	port   string
	dir    string
	stdout *strings.Builder
	mu     sync.Mutex
	exited chan error
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// startProc runs 'pbe serve' all-in-one and waits until it is ready.
func startProc(t *testing.T, dir, port string) *proc {
	t.Helper()
	p := launchProc(t, dir, port, []string{"--replication-interval", "100ms"}, []string{"PBE_ADMIN_TOKEN="})
	p.waitReady()
	return p
}

// launchProc runs 'pbe serve' with extra flags and environment.
func launchProc(t testing.TB, dir, port string, args, env []string) *proc {
	t.Helper()
	bin, err := pbeBinary()
	if err != nil {
		t.Fatal(err)
	}
	level := cmp.Or(os.Getenv("PBE_TEST_LOG_LEVEL"), "warn") // e.g. info or debug, to see why a test failed
	args = append([]string{"serve", "--http", "127.0.0.1:" + port, "--dir", dir, "--log-level", level}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{t: t, cmd: cmd, port: port, dir: dir, stdout: &strings.Builder{}, exited: make(chan error, 1)}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.collect(stdout, true)
	go p.collect(stderr, false)
	go func() { p.exited <- cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("output of pbe %s:\n%s", strings.Join(args, " "), p.output())
		}
	})
	return p
}

// waitReady waits until the process answers /readyz with 200.
func (p *proc) waitReady() {
	p.t.Helper()
	client := loopbackClient(p.port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get("http://localhost:" + p.port + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pbe did not become ready; output:\n%s", p.output())
		}
		select {
		case <-p.exited:
			p.t.Fatalf("pbe exited; output:\n%s", p.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *proc) collect(r io.Reader, keep bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p.mu.Lock()
		p.stdout.WriteString(sc.Text() + "\n")
		p.mu.Unlock()
	}
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// stop sends sig and waits for the process to exit.
func (p *proc) stop(sig syscall.Signal) error {
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.exited:
		return err
	case <-time.After(60 * time.Second):
		p.t.Fatalf("pbe did not exit after %v; output:\n%s", sig, p.output())
		return nil
	}
}

// cli runs a pbe subcommand against the process and returns its stdout.
func (p *proc) cli(t *testing.T, args ...string) string {
	t.Helper()
	bin, _ := pbeBinary()
	args = append(args, "--server", "http://127.0.0.1:"+p.port, "--dir", p.dir)
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("pbe %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

// harness reuses the in-process test helpers against the process.
func (p *proc) harness(t *testing.T) *testServer {
	tok, err := os.ReadFile(filepath.Join(p.dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{t: t, port: p.port, token: strings.TrimSpace(string(tok)), client: loopbackClient(p.port)}
}

func TestBinary_EndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the pbe binary")
	}
	t.Parallel()
	dir, port := t.TempDir(), freePort(t)
	top := t // processes outlive the subtest that starts them
	p := startProc(top, dir, port)

	// The banner reaches the test through a pipe: it may still be on its
	// way when the server is ready.
	tok, _ := os.ReadFile(filepath.Join(dir, "admin.token"))
	banner := func() bool {
		out := p.output()
		return strings.Contains(out, strings.TrimSpace(string(tok))) && strings.Contains(out, "/api/cp/tenants")
	}
	for deadline := time.Now().Add(5 * time.Second); !banner() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !banner() {
		t.Fatalf("banner should print the operator token once and how to create a tenant:\n%s", p.output())
	}

	var created struct{ ID, State string }
	if err := json.Unmarshal([]byte(p.cli(t, "tenant", "create", "acme", "--admin-email", "admin@acme.test", "--admin-password", "password-acme")), &created); err != nil {
		t.Fatal(err)
	}
	if created.ID != "acme" || created.State != "active" {
		t.Fatalf("tenant create: got %+v", created)
	}
	if list := p.cli(t, "tenant", "list"); !strings.Contains(list, "acme") {
		t.Fatalf("tenant list: %s", list)
	}
	if get := p.cli(t, "tenant", "get", "acme"); !strings.Contains(get, `"epoch": 1`) {
		t.Fatalf("tenant get: %s", get)
	}

	s := p.harness(t)
	s.createPostsCollection("acme", s.superuserToken("acme"))
	want := []string{"one", "two", "three"}
	for _, title := range want {
		s.createPost("acme", title)
	}

	t.Run("SIGTERM then restart", func(t *testing.T) {
		if err := p.stop(syscall.SIGTERM); err != nil {
			t.Fatalf("graceful stop: %v\n%s", err, p.output())
		}
		p = startProc(top, dir, port)
		if strings.Contains(p.output(), "Operator token") {
			t.Fatal("the operator token was printed again on restart")
		}
		assertTitles(t, p.harness(t), "acme", want)
	})
	t.Run("wipe the local cache then restart", func(t *testing.T) {
		if err := p.stop(syscall.SIGINT); err != nil {
			t.Fatalf("graceful stop: %v", err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "tenants")); err != nil {
			t.Fatal(err)
		}
		p = startProc(top, dir, port)
		assertTitles(t, p.harness(t), "acme", want)
		integrityCheck(t, filepath.Join(dir, "tenants", "acme", "pb_data", "data.db"))
	})
	t.Run("kill -9 while writing loses nothing acknowledged", func(t *testing.T) {
		acked := writeUntilKilled(t, p, "acme", "k")
		p = startProc(top, dir, port)
		got := titleSet(p.harness(t), "acme")
		for _, w := range acked {
			if !got[w.title] {
				t.Fatalf("acknowledged write %q lost after kill -9", w.title)
			}
		}
		integrityCheck(t, filepath.Join(dir, "tenants", "acme", "pb_data", "data.db"))
	})
	t.Run("kill -9 then wipe: loss bounded by the replication lag", func(t *testing.T) {
		acked := writeUntilKilled(t, p, "acme", "w")
		killedAt := acked[len(acked)-1].at
		if err := os.RemoveAll(filepath.Join(dir, "tenants")); err != nil {
			t.Fatal(err)
		}
		p = startProc(top, dir, port)
		got := titleSet(p.harness(t), "acme")
		// Replication runs every 100 ms; allow generous scheduling slack on
		// a loaded machine.
		const bound = 3 * time.Second
		var lostWindow time.Duration
		for _, w := range acked {
			if !got[w.title] {
				if age := killedAt.Sub(w.at); age > lostWindow {
					lostWindow = age
				}
			}
		}
		t.Logf("%d acknowledged writes, oldest lost write was acknowledged %v before the kill", len(acked), lostWindow)
		if lostWindow > bound {
			t.Fatalf("lost a write acknowledged %v before kill -9, beyond the replication bound %v", lostWindow, bound)
		}
		integrityCheck(t, filepath.Join(dir, "tenants", "acme", "pb_data", "data.db"))
	})
	t.Run("delete and restore-deleted from the command line", func(t *testing.T) {
		p.cli(t, "tenant", "delete", "acme")
		mustStatus(t, p.harness(t).do("GET", p.harness(t).tenantURL("acme", "/api/health"), nil), http.StatusNotFound)
		p.cli(t, "tenant", "restore-deleted", "acme")
		assertTitles(t, p.harness(t), "acme", want[:1])
	})
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
}

type ackedWrite struct {
	title string
	at    time.Time
}

// writeUntilKilled writes posts for a while, kills the process with
// SIGKILL mid-stream, and returns the writes that were acknowledged.
func writeUntilKilled(t *testing.T, p *proc, id, prefix string) []ackedWrite {
	t.Helper()
	s := p.harness(t)
	var (
		mu    sync.Mutex
		acked []ackedWrite
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				title := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				req, _ := http.NewRequest("POST", s.tenantURL(id, "/api/collections/posts/records"), strings.NewReader(`{"title":"`+title+`"}`))
				req.Header.Set("Content-Type", "application/json")
				resp, err := s.client.Do(req)
				if err != nil {
					return
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					acked = append(acked, ackedWrite{title, time.Now()})
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	_ = p.cmd.Process.Kill()
	<-p.exited
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged before the kill")
	}
	return acked
}

func titleSet(s *testServer, id string) map[string]bool {
	set := map[string]bool{}
	for _, title := range s.postTitles(id) {
		set[title] = true
	}
	return set
}

func assertTitles(t testing.TB, s *testServer, id string, want []string) {
	t.Helper()
	got := titleSet(s, id)
	for _, w := range want {
		if !got[w] {
			t.Fatalf("%s: record %q missing; have %d records", id, w, len(got))
		}
	}
}
