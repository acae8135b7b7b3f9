// Package s3test starts a real S3-compatible server (versitygw) on loopback
// for tests. The binary is installed by .ci/run with
//
//	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// and looked up in PATH and in $(go env GOPATH)/bin. Without it the tests
// that need S3 are skipped, unless PBE_REQUIRE_S3=1 (set by .ci/run) makes
// its absence a failure.
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// Credentials of the test server.
const (
	AccessKey = "pbe-test-access"
	SecretKey = "pbe-test-secret-0123456789"
	Region    = "us-east-1"
)

// Server is a running versitygw.
type Server struct {
	Endpoint string // http://127.0.0.1:port
	dir      string
	cmd      *exec.Cmd
	exited   chan struct{}
	stopped  atomic.Bool
	t        testing.TB
}

// Binary returns the path of versitygw, or "".
func Binary() string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Start runs versitygw over a temporary directory; it is stopped when the
// test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("PBE_REQUIRE_S3") != "" {
			t.Fatal("versitygw not found: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
		}
		t.Skip("versitygw not installed (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
	}
	s := &Server{dir: t.TempDir(), t: t}
	s.start(freeAddr(t))
	t.Cleanup(s.Stop)
	return s
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (s *Server) start(addr string) {
	s.t.Helper()
	var out bytes.Buffer
	s.cmd = exec.Command(Binary(), "--port", addr, "posix", s.dir)
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey)
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	s.Endpoint = "http://" + addr
	s.stopped.Store(false)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("versitygw did not start: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server (its data stays for Restart).
func (s *Server) Stop() {
	if s.stopped.Swap(true) {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// Restart starts a stopped server again on the same address and data.
func (s *Server) Restart() {
	s.t.Helper()
	s.start(strings.TrimPrefix(s.Endpoint, "http://"))
}

// Client returns an S3 client for the server.
func (s *Server) Client() *awss3.Client {
	return awss3.New(awss3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
}

var bucketSeq atomic.Int64

// Bucket creates a fresh bucket and returns its name.
func (s *Server) Bucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("pbe-test-%d-%d", os.Getpid(), bucketSeq.Add(1))
	if _, err := s.Client().CreateBucket(context.Background(), &awss3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return name
}

// URL is the object-store URL of a fresh bucket with prefix.
func (s *Server) URL(t testing.TB, prefix string) string {
	return fmt.Sprintf("s3://%s:%s@%s/%s?endpoint=%s&region=%s", AccessKey, SecretKey, s.Bucket(t), prefix, s.Endpoint, Region)
}
