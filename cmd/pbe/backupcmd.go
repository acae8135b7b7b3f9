package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbe/pbe/controlplane"
)

func newBackupCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Restore tenants of a running pbe to a moment or a named backup; export and import them",
	}
	o.register(cmd)
	cmd.AddCommand(backupPointsCmd(&o), backupRestoreCmd(&o), backupListCmd(&o), backupCreateCmd(&o),
		backupDeleteCmd(&o), backupRestoreNamedCmd(&o), backupExportCmd(&o), backupImportCmd(&o))
	return cmd
}

// usageArgs makes a wrong number of arguments a usage error.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// backupCmd is a subcommand that calls the API once and prints its answer
// as JSON. check, when set, validates the flags before anything is sent.
func backupCmd(o *clientOptions, use, short string, nargs int, check func() error,
	call func(context.Context, *controlplane.HTTPClient, []string) (any, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  usageArgs(cobra.ExactArgs(nargs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if check != nil {
				if err := check(); err != nil {
					return err
				}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			v, err := call(cmd.Context(), c, args)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), v)
		},
	}
}

func backupPointsCmd(o *clientOptions) *cobra.Command {
	return backupCmd(o, "points <tenant>", "Show the window a tenant can be restored to (from, to, per ownership epoch)", 1, nil,
		func(ctx context.Context, c *controlplane.HTTPClient, args []string) (any, error) {
			return c.RestorePoints(ctx, args[0])
		})
}

func backupRestoreCmd(o *clientOptions) *cobra.Command {
	var at, fork string
	var ts time.Time
	cmd := backupCmd(o, "restore <tenant> --at <time>",
		"Restore a tenant to a moment of its window, in place (undoable) or with --fork into a new tenant", 1,
		func() (err error) {
			ts, err = parseAt(at)
			return err
		},
		func(ctx context.Context, c *controlplane.HTTPClient, args []string) (any, error) {
			return c.RestoreTo(ctx, args[0], ts, fork)
		})
	cmd.Flags().StringVar(&at, "at", "", "the moment to restore, RFC 3339 (e.g. 2026-11-29T10:00:00Z); see pbe backup points")
	cmd.Flags().StringVar(&fork, "fork", "", "id of a new tenant to restore into, leaving the tenant itself alone")
	return cmd
}

// parseAt parses the --at of a restore.
func parseAt(at string) (time.Time, error) {
	if at == "" {
		return time.Time{}, usageError{errors.New("--at is required: the moment to restore, in RFC 3339 (e.g. 2026-11-29T10:00:00Z)")}
	}
	ts, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return time.Time{}, usageError{fmt.Errorf("--at %q is not an RFC 3339 time such as 2026-11-29T10:00:00Z or 2026-11-29T11:00:00+01:00", at)}
	}
	return ts, nil
}

func backupListCmd(o *clientOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list <tenant>",
		Short: "List a tenant's named backups",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			bs, err := c.Backups(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), bs)
			}
			for _, b := range bs {
				fmt.Fprintln(cmd.OutOrStdout(), b.Name)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func backupCreateCmd(o *clientOptions) *cobra.Command {
	var name string
	cmd := backupCmd(o, "create <tenant>", "Store a named backup of a tenant's latest replicated state and files", 1, nil,
		func(ctx context.Context, c *controlplane.HTTPClient, args []string) (any, error) {
			return c.CreateBackup(ctx, args[0], name)
		})
	cmd.Flags().StringVar(&name, "name", "", "backup name: letters, digits, '.', '_' or '-' (default: the time, e.g. 20261129T100000Z)")
	return cmd
}

func backupDeleteCmd(o *clientOptions) *cobra.Command {
	return backupCmd(o, "delete <tenant> <name>", "Delete a named backup", 2, nil,
		func(ctx context.Context, c *controlplane.HTTPClient, args []string) (any, error) {
			if err := c.DeleteBackup(ctx, args[0], args[1]); err != nil {
				return nil, err
			}
			return map[string]string{"tenant": args[0], "deleted": args[1]}, nil
		})
}

func backupRestoreNamedCmd(o *clientOptions) *cobra.Command {
	return backupCmd(o, "restore-named <tenant> <name>",
		"Restore a named backup in place (undoable like restore --at; files uploaded since stay)", 2, nil,
		func(ctx context.Context, c *controlplane.HTTPClient, args []string) (any, error) {
			return c.RestoreBackup(ctx, args[0], args[1])
		})
}

func backupExportCmd(o *clientOptions) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export <tenant>",
		Short: "Download a tenant as one archive (a PocketBase pb_data directory, gzipped tar)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			id := args[0]
			if out == "-" {
				_, err := c.ExportTenant(cmd.Context(), id, cmd.OutOrStdout())
				return err
			}
			path := out
			if path == "" {
				path = fmt.Sprintf("%s-%s.tar.gz", id, time.Now().UTC().Format("20060102T150405Z"))
			}
			n, err := exportToFile(cmd.Context(), c, id, path)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), map[string]any{"tenant": id, "file": path, "bytes": n})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", `file to write, "-" for standard output (default: <tenant>-<time>.tar.gz)`)
	return cmd
}

// exportToFile streams tenant id's archive into a temporary file beside
// path and renames it to path once complete, so that path never holds a
// partial archive.
func exportToFile(ctx context.Context, c *controlplane.HTTPClient, id, path string) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := c.ExportTenant(ctx, id, f)
	if err != nil {
		return n, err
	}
	if err := f.Sync(); err != nil {
		return n, err
	}
	if err := f.Close(); err != nil {
		return n, err
	}
	return n, os.Rename(f.Name(), path)
}

func backupImportCmd(o *clientOptions) *cobra.Command {
	var id, name string
	cmd := &cobra.Command{
		Use:   "import <file|-> --id <new-id>",
		Short: "Create a tenant from an archive (an export or a PocketBase pb_data directory as a gzipped tar)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if id == "" {
				return usageError{errors.New("--id is required: the id of the tenant to create")}
			}
			f, size, err := archiveFile(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer f.Close()
			c, err := o.client()
			if err != nil {
				return err
			}
			t, err := c.ImportTenant(cmd.Context(), id, name, f, size)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), t)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "id of the tenant to create (required)")
	cmd.Flags().StringVar(&name, "name", "", "display name of the tenant")
	return cmd
}

// archiveFile opens the archive at path for sending, with its size: a
// regular file as it is; standard input ("-") or a pipe is first copied to
// a temporary file, removed once closed, since every attempt of the
// upload reads the archive from its start.
func archiveFile(path string, stdin io.Reader) (*os.File, int64, error) {
	var src io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		if fi.Mode().IsRegular() {
			return f, fi.Size(), nil
		}
		defer f.Close()
		src = f
	}
	tmp, err := os.CreateTemp("", "pbe-import-*.tar.gz")
	if err != nil {
		return nil, 0, err
	}
	_ = os.Remove(tmp.Name()) // the open file stays readable
	n, err := io.Copy(tmp, src)
	if err != nil {
		tmp.Close()
		return nil, 0, fmt.Errorf("read the archive from %s: %w", path, err)
	}
	return tmp, n, nil
}
