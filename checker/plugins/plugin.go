// Package plugins holds the checks that run on a response after the
// built-in expectations: one interface, a registry, and one file per
// plugin. Plugins are compiled in; a Website enables them by name.
//
// A plugin never fails the check itself: it gives a verdict (OK, Warning
// or Error) with a message, which the checker stores with the result and
// summarises into the Website's status, where a Warning or an Error makes
// the Website Degraded.
package plugins

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"time"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/checker/probe"
	"github.com/webmon-dev/webmon/internal/task"
)

// Outcome is a plugin's verdict: OK, Warning or Error.
type Outcome = monitoringv1alpha1.PluginOutcome

// The verdicts, as the Website's status names them.
const (
	OK      = monitoringv1alpha1.PluginOK
	Warning = monitoringv1alpha1.PluginWarning
	Error   = monitoringv1alpha1.PluginError
)

// Input is one check for a plugin to look at.
type Input struct {
	Task *task.Task
	// Config is the plugin's settings from the Website, already accepted
	// by Validate.
	Config map[string]string
	// Response is what the probe saw; never nil. When Response.Failed(),
	// no full response arrived, and most plugins have nothing to judge.
	Response *probe.Response
	// CheckFailed is true when the response failed the Website's
	// expectations (an unexpected status, a body mismatch, too slow).
	CheckFailed bool
}

// Result is a plugin's verdict on one check. It is stored, as JSON, with
// the check's result.
type Result struct {
	Name    string  `json:"name"`
	Outcome Outcome `json:"result"`
	Message string  `json:"message,omitempty"`
	// Values are the figures the plugin measured (days left, page size…),
	// by name.
	Values map[string]float64 `json:"values,omitempty"`
}

// Plugin is a check that runs on every response of the Websites that
// enable it. Run is called concurrently, and must honour ctx, bound its
// own work, and never panic on hostile input.
type Plugin interface {
	// Name is the name Websites enable the plugin by.
	Name() string
	// Validate reports a configuration the plugin cannot run with, naming
	// the key at fault and what it accepts.
	Validate(config map[string]string) error
	// Run judges one check. It returns false when there is nothing to
	// judge (such as no response to look at); the plugin's last verdict
	// then stands.
	Run(ctx context.Context, in *Input) (Result, bool)
}

// Stateful is a plugin that judges each check against the URL's history.
// Run only measures, concurrently; the checker then calls Judge one URL at
// a time, in the order the checks were scheduled, with the History it
// keeps in PostgreSQL, so that the history survives restarts and moves
// between checkers and a redelivered check is never counted twice.
type Stateful interface {
	Plugin
	// Judge turns what Run measured into a verdict against h, and adds the
	// measurement to h when scheduledAt, the check's Task.ScheduledAt, is
	// after h.LastScheduledAt; a redelivered check is judged but not
	// counted again.
	Judge(config map[string]string, scheduledAt time.Time, measured Result, h *History) Result
}

// Options are the checker's settings for every plugin.
type Options struct {
	// Resolver is the resolver the checks use; nil is the system's.
	Resolver *net.Resolver
	// RootCAs verify certificates; nil is the system's roots.
	RootCAs *x509.CertPool
	// BlocklistResolver is the address (host:port) of the filtering DNS
	// resolver that dns-blocklist asks; empty is Quad9, 9.9.9.9:53.
	BlocklistResolver string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Registry is the set of plugins the checker runs, by name.
type Registry struct {
	plugins map[string]Plugin
}

// NewRegistry makes every plugin webmon has.
func NewRegistry(opts Options) *Registry {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BlocklistResolver == "" {
		opts.BlocklistResolver = DefaultBlocklistResolver
	}
	r := &Registry{plugins: map[string]Plugin{}}
	for _, p := range []Plugin{
		newTLSExpiry(opts),
		newHTMLStats(),
		newDNSBlocklist(opts),
		newJSONPath(),
	} {
		r.plugins[p.Name()] = p
	}
	return r
}

// Get returns the plugin of that name.
func (r *Registry) Get(name string) (Plugin, bool) {
	p, ok := r.plugins[name]
	return p, ok
}

// Names lists the plugins, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.plugins))
	for name := range r.plugins {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Validate checks every plugin a task enables: known, and configured as
// it accepts.
func (r *Registry) Validate(specs []task.Plugin) error {
	for _, s := range specs {
		p, ok := r.plugins[s.Name]
		if !ok {
			return fmt.Errorf("plugin %q is unknown", s.Name)
		}
		if err := p.Validate(s.Config); err != nil {
			return fmt.Errorf("plugin %s: %w", s.Name, err)
		}
	}
	return nil
}
