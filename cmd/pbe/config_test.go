package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestApplyEnvAndFile_Precedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pbe.yaml")
	if err := os.WriteFile(file, []byte("max-tenants: 10\ndomain: file.example\nlog-level: debug\nidle-timeout: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PBE_MAX_TENANTS", "20")
	t.Setenv("PBE_DOMAIN", "env.example")

	cmd := newServeCmd()
	if err := cmd.Flags().Parse([]string{"--max-tenants", "30"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnvAndFile(cmd.Flags(), file); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"max-tenants":  "30",          // flag beats env and file
		"domain":       "env.example", // env beats file
		"log-level":    "debug",       // file beats default
		"idle-timeout": "1m0s",
		"http":         "127.0.0.1:8090", // default
	} {
		if got := cmd.Flags().Lookup(name).Value.String(); got != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
}

func TestApplyEnvAndFile_Errors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, file, env, want string
	}{
		{"unknown setting", write("a.yaml", "colour: red\n"), "", `unknown setting "colour"`},
		{"bad value in file", write("b.yaml", "max-tenants: lots\n"), "", "max-tenants"},
		{"bad value in env", "", "PBE_IDLE_TIMEOUT=soon", "PBE_IDLE_TIMEOUT"},
		{"missing file", filepath.Join(dir, "nope.yaml"), "", "config file"},
		{"json works too", write("c.json", `{"max-tenants": 5}`), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				k, v, _ := strings.Cut(tc.env, "=")
				t.Setenv(k, v)
			}
			cmd := newServeCmd()
			err := applyEnvAndFile(cmd.Flags(), tc.file)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestServe_HelpDocumentsEveryFlag(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"serve", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	serve, _, _ := root.Find([]string{"serve"})
	serve.Flags().VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(out.String(), "--"+f.Name) || f.Usage == "" {
			t.Errorf("flag --%s is not documented in serve --help", f.Name)
		}
	})
	if !strings.Contains(out.String(), "PBE_") {
		t.Error("help does not explain the PBE_* environment variables")
	}
}

func TestServe_BadConfigIsAUsageError(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"serve", "--mode", "bogus"},
		{"serve", "--mode", "gateway"},
		{"serve", "--http", "nonsense"},
		{"serve", "--log-level", "loud"},
		{"serve", "--public-url", "http://example.com"},
		{"serve", "--max-body", "huge"},
		{"serve", "--dir", dir, "--http", "127.0.0.1:0", "--max-tenants", "0"},
	} {
		if code := run(context.Background(), args); code != exitUsage && code != exitError {
			t.Errorf("pbe %v: exit %d, want a failure", args, code)
		}
		if code := run(context.Background(), args); code == exitOK {
			t.Errorf("pbe %v succeeded", args)
		}
	}
	if code := run(context.Background(), []string{"serve", "--mode", "bogus"}); code != exitUsage {
		t.Errorf("unknown mode: exit %d, want %d", code, exitUsage)
	}
}
