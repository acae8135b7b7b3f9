package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbe/pbe/tenantnode/hooks"
)

// hookClientOptions reach one tenant's API as one of its superusers.
type hookClientOptions struct {
	email, password, token string
	// client is the HTTP client (nil: a default one).
	client *http.Client
}

func newHooksCmd() *cobra.Command {
	var o hookClientOptions
	cmd := &cobra.Command{
		Use:   "hooks",
		Short: "Import and inspect a tenant's JavaScript hooks (as one of the tenant's superusers)",
		Long: `Import and inspect a tenant's JavaScript hooks.

The hooks are stored in the tenant's _hooks collection; these commands call
the tenant's own API (https://{tenant}.{domain}) as one of its superusers:
give --email and --password (or PBE_TENANT_PASSWORD), or --token.`,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.email, "email", "", "a superuser of the tenant")
	f.StringVar(&o.password, "password", "", "that superuser's password (env PBE_TENANT_PASSWORD)")
	f.StringVar(&o.token, "token", "", "a superuser auth token of the tenant, instead of --email and --password")
	cmd.AddCommand(hooksImportCmd(&o), hooksStatusCmd(&o))
	return cmd
}

func hooksImportCmd(o *hookClientOptions) *cobra.Command {
	var migrations string
	cmd := &cobra.Command{
		Use:   "import TENANT_URL PB_HOOKS_DIR",
		Short: "Store a pb_hooks directory (and, with --migrations, a pb_migrations directory) in a tenant",
		Long: `Store the *.pb.js files of a pb_hooks directory as the tenant's hooks, and
the *.js files of a pb_migrations directory as its migrations (run once, in
order). A file already stored under the same name is replaced. If any file
does not compile, nothing is stored. The hooks take effect at once.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req hooks.ImportRequest
			var err error
			if req.Hooks, err = readJSFiles(args[1], ".pb.js"); err != nil {
				return usageError{err}
			}
			if migrations != "" {
				if req.Migrations, err = readJSFiles(migrations, ".js"); err != nil {
					return usageError{err}
				}
			}
			if len(req.Hooks)+len(req.Migrations) == 0 {
				return usageError{fmt.Errorf("no *.pb.js files in %s", args[1])}
			}
			var st hooks.Status
			if err := o.call(args[0], "POST", "/api/pbe/hooks/import", req, &st); err != nil {
				return err
			}
			return printHookStatus(cmd.OutOrStdout(), st)
		},
	}
	cmd.Flags().StringVar(&migrations, "migrations", "", "a pb_migrations directory to import too")
	return cmd
}

func hooksStatusCmd(o *hookClientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status TENANT_URL",
		Short: "Show the tenant's hooks: loaded or why not, what each binds, runs and errors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st hooks.Status
			if err := o.call(args[0], "GET", "/api/pbe/hooks", nil, &st); err != nil {
				return err
			}
			return printHookStatus(cmd.OutOrStdout(), st)
		},
	}
}

// readJSFiles reads the files of dir ending in suffix, by name.
func readJSFiles(dir, suffix string) ([]hooks.ImportFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []hooks.ImportFile
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), suffix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files = append(files, hooks.ImportFile{Name: e.Name(), Code: string(b)})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}

// call sends a request to the tenant's API as a superuser and decodes the
// JSON answer into out.
func (o *hookClientOptions) call(base, method, path string, body, out any) error {
	base = strings.TrimRight(base, "/")
	client := o.client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Minute, Transport: localhostTransport()}
	}
	token := o.token
	if token == "" {
		password := envOr("PBE_TENANT_PASSWORD", o.password)
		if o.email == "" || password == "" {
			return usageError{errors.New("give --email and --password (or PBE_TENANT_PASSWORD) of a tenant superuser, or --token")}
		}
		var auth struct{ Token string }
		if err := doJSON(client, "POST", base+"/api/collections/_superusers/auth-with-password", "",
			map[string]string{"identity": o.email, "password": password}, &auth); err != nil {
			return fmt.Errorf("log in to %s: %w", base, err)
		}
		token = auth.Token
	}
	return doJSON(client, method, base+path, token, body, out)
}

func doJSON(client *http.Client, method, url, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var e struct{ Message string }
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Message)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, out)
}

func printHookStatus(w io.Writer, st hooks.Status) error {
	fmt.Fprintf(w, "generation %d, loaded %s in %.1f ms\n", st.Generation, st.LoadedAt.Format(time.RFC3339), st.LoadMillis)
	if len(st.Migrations) > 0 {
		fmt.Fprintf(w, "migrations applied: %s\n", strings.Join(st.Migrations, ", "))
	}
	if st.MigrateErr != "" {
		fmt.Fprintf(w, "migration error: %s\n", st.MigrateErr)
	}
	for _, h := range st.Hooks {
		state := "loaded"
		switch {
		case !h.Enabled:
			state = "disabled"
		case h.Error != "":
			state = "error: " + h.Error
		case h.Kind == hooks.KindMigration:
			state = "migration"
		}
		fmt.Fprintf(w, "%-30s %s; %d runs, %d errors, %.1f ms", h.Name, state, h.Runs, h.Errors, h.TotalMillis)
		if len(h.Binds) > 0 {
			fmt.Fprintf(w, "; binds %s", strings.Join(h.Binds, ", "))
		}
		if h.LastError != "" {
			fmt.Fprintf(w, "; last error: %s", h.LastError)
		}
		fmt.Fprintln(w)
	}
	return nil
}

// localhostTransport resolves {name}.localhost to the loopback address, as
// browsers do (RFC 6761), so an all-in-one pbe's tenants are reachable at
// http://{tenant}.localhost:8090 without a hosts entry.
func localhostTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && (host == "localhost" || strings.HasSuffix(host, ".localhost")) {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return d.DialContext(ctx, network, addr)
	}
	return t
}
