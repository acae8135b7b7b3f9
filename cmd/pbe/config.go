package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// envPrefix starts every environment variable pbe reads.
const envPrefix = "PBE_"

// envName is the variable that sets flag name: --max-tenants is PBE_MAX_TENANTS.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnvAndFile fills every flag the command line did not set, first from
// its PBE_* environment variable, then from the config file (YAML or JSON,
// keys are flag names). Precedence: flags > environment > file > defaults.
func applyEnvAndFile(fs *pflag.FlagSet, configFile string) error {
	file := map[string]any{}
	if configFile != "" {
		b, err := os.ReadFile(configFile)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		if err := yaml.Unmarshal(b, &file); err != nil {
			return fmt.Errorf("config file %s: %w", configFile, err)
		}
		for k := range file {
			if fs.Lookup(k) == nil || k == "config" {
				return fmt.Errorf("config file %s: unknown setting %q (settings are the flag names of 'pbe serve --help')", configFile, k)
			}
		}
	}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", envName(f.Name), e)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if e := fs.Set(f.Name, fmt.Sprint(v)); e != nil {
				err = fmt.Errorf("config file %s: %s: %w", configFile, f.Name, e)
			}
		}
	})
	return err
}

// byteSize is a flag holding a size such as 32MiB or 1000000.
type byteSize int64

func (b *byteSize) String() string { return humanize.IBytes(uint64(*b)) }
func (b *byteSize) Type() string   { return "size" }
func (b *byteSize) Set(s string) error {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return fmt.Errorf("%q is not a size (examples: 1048576, 512KiB, 32MiB)", s)
	}
	*b = byteSize(n)
	return nil
}
