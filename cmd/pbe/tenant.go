package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pbe/pbe/cluster"
	"github.com/pbe/pbe/controlplane"
)

// clientOptions locate and authenticate against a running pbe.
type clientOptions struct {
	server string
	token  string
	dir    string
}

func (o *clientOptions) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&o.server, "server", envOr("PBE_SERVER", "http://127.0.0.1:8090"), "platform API address (env PBE_SERVER)")
	f.StringVar(&o.token, "token", "", "operator token (env PBE_TOKEN; default: read from {dir}/admin.token)")
	f.StringVar(&o.dir, "dir", envOr("PBE_DIR", "pbe_data"), "data directory of the local pbe, for its admin.token (env PBE_DIR)")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// client returns an API client with the token from --token, PBE_TOKEN or
// {dir}/admin.token.
func (o *clientOptions) client() (*controlplane.HTTPClient, error) {
	tok := o.token
	if tok == "" {
		tok = os.Getenv("PBE_TOKEN")
	}
	if tok == "" {
		b, err := os.ReadFile(filepath.Join(o.dir, "admin.token"))
		if err != nil {
			return nil, usageError{fmt.Errorf("no operator token: pass --token, set PBE_TOKEN, or run where %s exists", filepath.Join(o.dir, "admin.token"))}
		}
		tok = strings.TrimSpace(string(b))
	}
	return controlplane.NewHTTPClient(o.server, tok), nil
}

func newTenantCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{Use: "tenant", Short: "Create, list, inspect, delete, restore and archive tenants of a running pbe"}
	o.register(cmd)
	cmd.AddCommand(tenantCreateCmd(&o), tenantListCmd(&o), tenantGetCmd(&o), tenantDeleteCmd(&o),
		tenantRestoreCmd(&o), tenantAddAdminCmd(&o), tenantArchiveCmd(&o), tenantUnarchiveCmd(&o))
	return cmd
}

func tenantCreateCmd(o *clientOptions) *cobra.Command {
	var in controlplane.CreateTenantInput
	var email, password, durability string
	cmd := &cobra.Command{
		Use:   "create <id>",
		Short: "Create a tenant, optionally with its first PocketBase superuser",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			in.ID, in.Durability = args[0], cluster.Durability(durability)
			if email != "" || password != "" {
				in.Admin = &controlplane.Admin{Email: email, Password: envOr("PBE_ADMIN_PASSWORD", password)}
			}
			t, err := c.CreateTenant(cmd.Context(), in)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), t)
		},
	}
	cmd.Flags().StringVar(&in.Name, "name", "", "display name")
	cmd.Flags().StringVar(&durability, "durability", "", "async (default) or sync")
	cmd.Flags().StringVar(&email, "admin-email", "", "e-mail of the tenant's first superuser")
	cmd.Flags().StringVar(&password, "admin-password", "", "password of the tenant's first superuser (or env PBE_ADMIN_PASSWORD)")
	return cmd
}

func tenantListCmd(o *clientOptions) *cobra.Command {
	var state string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tenants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ts, err := c.ListTenants(cmd.Context(), state)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), ts)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tNODE\tEPOCH\tCREATED\tURL")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", t.ID, t.State, t.Node, t.Epoch, t.CreatedAt.Format("2006-01-02 15:04"), t.URL)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "active, archived, deleted or all (default: every tenant not deleted)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// tenantIDCmd is a subcommand that takes one tenant id and prints a tenant.
func tenantIDCmd(o *clientOptions, use, short string, call func(*controlplane.HTTPClient, *cobra.Command, string) (any, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use + " <id>",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			v, err := call(c, cmd, args[0])
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), v)
		},
	}
}

func tenantGetCmd(o *clientOptions) *cobra.Command {
	return tenantIDCmd(o, "get", "Show a tenant", func(c *controlplane.HTTPClient, cmd *cobra.Command, id string) (any, error) {
		return c.GetTenant(cmd.Context(), id)
	})
}

func tenantDeleteCmd(o *clientOptions) *cobra.Command {
	return tenantIDCmd(o, "delete", "Delete a tenant (its data is kept for the grace period; see restore-deleted)",
		func(c *controlplane.HTTPClient, cmd *cobra.Command, id string) (any, error) {
			return c.DeleteTenant(cmd.Context(), id)
		})
}

func tenantRestoreCmd(o *clientOptions) *cobra.Command {
	return tenantIDCmd(o, "restore-deleted", "Bring back a deleted tenant within its grace period",
		func(c *controlplane.HTTPClient, cmd *cobra.Command, id string) (any, error) {
			return c.RestoreTenant(cmd.Context(), id)
		})
}

func tenantArchiveCmd(o *clientOptions) *cobra.Command {
	return tenantIDCmd(o, "archive", "Archive a tenant now, as idle tenants are: its history becomes one archive and no node holds it",
		func(c *controlplane.HTTPClient, cmd *cobra.Command, id string) (any, error) {
			return c.ArchiveTenant(cmd.Context(), id)
		})
}

func tenantUnarchiveCmd(o *clientOptions) *cobra.Command {
	return tenantIDCmd(o, "unarchive", "Open an archived tenant now, rather than on its next request",
		func(c *controlplane.HTTPClient, cmd *cobra.Command, id string) (any, error) {
			return c.UnarchiveTenant(cmd.Context(), id)
		})
}

func tenantAddAdminCmd(o *clientOptions) *cobra.Command {
	var a controlplane.Admin
	cmd := tenantIDCmd(o, "add-admin", "Create a PocketBase superuser in a tenant",
		func(c *controlplane.HTTPClient, cmd *cobra.Command, id string) (any, error) {
			a.Password = envOr("PBE_ADMIN_PASSWORD", a.Password)
			if a.Email == "" || a.Password == "" {
				return nil, usageError{errors.New("--email and --password (or PBE_ADMIN_PASSWORD) are required")}
			}
			if err := c.CreateAdmin(cmd.Context(), id, a); err != nil {
				return nil, err
			}
			return map[string]string{"tenant": id, "email": a.Email}, nil
		})
	cmd.Flags().StringVar(&a.Email, "email", "", "superuser e-mail")
	cmd.Flags().StringVar(&a.Password, "password", "", "superuser password (or env PBE_ADMIN_PASSWORD)")
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
