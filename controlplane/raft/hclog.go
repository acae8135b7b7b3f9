package raft

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter sends the logs of hashicorp/raft, raft-wal and their
// transports to slog. Raft is chatty at Info (every election step,
// snapshot and pipeline change), so its Info is logged at slog's Debug: at
// the default Info level only raft's warnings and errors show, and this
// package logs the state transitions that matter (leader changes) itself.
type hclogAdapter struct {
	base    *slog.Logger // without name and implied args
	logger  *slog.Logger // base with name and implied args
	name    string
	implied []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

// newHCLog returns an hclog.Logger writing to l.
func newHCLog(l *slog.Logger) *hclogAdapter {
	return &hclogAdapter{base: l, logger: l}
}

// slogLevel maps an hclog level to the slog level it is logged at.
func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default: // Debug, Info, NoLevel
		return slog.LevelDebug
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	if level == hclog.Warn && startupElection(msg, args) {
		level = hclog.Info // every node's first election; not a warning
	}
	a.logger.Log(context.Background(), slogLevel(level), msg, args...)
}

// startupElection reports whether a log line is raft's election warning for
// a node that has never known a leader.
func startupElection(msg string, args []any) bool {
	if msg != "heartbeat timeout reached, starting election" {
		return false
	}
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == "last-leader-id" {
			return fmt.Sprint(args[i+1]) == ""
		}
	}
	return false
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(level hclog.Level) bool {
	return a.logger.Enabled(context.Background(), slogLevel(level))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }
func (a *hclogAdapter) Name() string       { return a.name }

// derive returns an adapter with this name and implied args.
func (a *hclogAdapter) derive(name string, implied []any) *hclogAdapter {
	l := a.base
	if name != "" {
		l = l.With("logger", name)
	}
	return &hclogAdapter{base: a.base, logger: l.With(implied...), name: name, implied: implied}
}

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	implied := append(append([]any(nil), a.implied...), args...)
	return a.derive(a.name, implied)
}

func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.derive(name, a.implied)
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger { return a.derive(name, a.implied) }

// SetLevel does nothing: the slog handler decides what is logged.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

// GetLevel returns the lowest hclog level the slog handler logs.
func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Warn, hclog.Error} {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

// StandardLogger returns a log.Logger whose lines are logged at opts'
// ForceLevel (Info, that is slog Debug, by default).
func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return slog.NewLogLogger(a.logger.Handler(), slogLevel(level))
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return a.StandardLogger(opts).Writer()
}
