// Package task is the wire format of check tasks: what a scheduler publishes
// to Kafka for each due URL and a checker consumes.
//
// A message is one version byte followed by a protocol-buffers message whose
// fields are listed below. The encoding is written with protowire rather than
// generated code: the schema is small, the scheduler appends the fields it
// shares between all URLs of a Website once (see Prefix) and only the per-URL
// fields per message, and nothing needs protoc. docs/benchmarks.md compares it
// with JSON.
//
// Compatibility: within a version, fields are only ever added with new
// numbers, and decoders skip the numbers they do not know. A change that old
// checkers must not misread takes a new version byte; they count and skip it.
//
// Secret values never travel: a header taken from a Secret carries the
// Secret's name and key, and the checker reads the value itself from the
// Website's namespace (see docs/design/secrets.md).
package task

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Version is the format version byte that starts every message.
const Version byte = 1

// Trigger says why a task was published.
type Trigger uint8

const (
	// TriggerSchedule is a regular check, due at its place in the interval.
	TriggerSchedule Trigger = 0
	// TriggerCheckNow is a check asked for with the check-now annotation.
	TriggerCheckNow Trigger = 1
)

// Task is one check of one URL of a Website.
type Task struct {
	Namespace  string `json:"namespace,omitzero"`
	Name       string `json:"name,omitzero"`
	UID        string `json:"uid,omitzero"`
	Generation int64  `json:"generation,omitzero"`

	URL string `json:"url,omitzero"`
	// URLIndex is the URL's position in spec.urls.
	URLIndex int `json:"urlIndex,omitzero"`

	Method  string        `json:"method,omitzero"`
	Timeout time.Duration `json:"timeout,omitzero"`
	Headers []Header      `json:"headers,omitzero"`
	Body    string        `json:"body,omitzero"`
	Expect  Expectations  `json:"expect,omitzero"`
	Plugins []Plugin      `json:"plugins,omitzero"`

	FailureThreshold int32 `json:"failureThreshold,omitzero"`
	SuccessThreshold int32 `json:"successThreshold,omitzero"`

	// ScheduledAt is when the check is due; with the Website and URL it
	// identifies the check, so that a redelivered task is stored once.
	ScheduledAt time.Time `json:"scheduledAt,omitzero"`
	// Deadline is when the task goes stale: a checker that gets it later
	// records a missed check instead of probing.
	Deadline time.Time `json:"deadline,omitzero"`

	Trigger Trigger `json:"trigger,omitzero"`
	// CheckNow is the check-now annotation's value that asked for this task.
	CheckNow string `json:"checkNow,omitzero"`
}

// Header is a request header. Exactly one of Value and SecretRef is set.
type Header struct {
	Name  string `json:"name,omitzero"`
	Value string `json:"value,omitzero"`
	// SecretRef names the Secret key, in the Website's namespace, that
	// holds the value.
	SecretRef *SecretKeyRef `json:"secretRef,omitzero"`
}

// SecretKeyRef is a key of a Secret in the Website's namespace.
type SecretKeyRef struct {
	Name string `json:"name,omitzero"`
	Key  string `json:"key,omitzero"`
}

// Expectations are what makes a response a success.
type Expectations struct {
	// StatusCodes are codes or ranges such as "200-299"; empty means 2xx.
	StatusCodes  []string      `json:"statusCodes,omitzero"`
	BodyRegex    string        `json:"bodyRegex,omitzero"`
	BodyNotRegex string        `json:"bodyNotRegex,omitzero"`
	MaxLatency   time.Duration `json:"maxLatency,omitzero"`
	// FollowRedirects and MaxRedirects are nil when the Website leaves them
	// to the checker's defaults.
	FollowRedirects *bool  `json:"followRedirects,omitzero"`
	MaxRedirects    *int32 `json:"maxRedirects,omitzero"`
	TLSSkipVerify   bool   `json:"tlsSkipVerify,omitzero"`
}

// Plugin is a plugin to run after the check, with its configuration.
type Plugin struct {
	Name   string            `json:"name,omitzero"`
	Config map[string]string `json:"config,omitzero"`
}

// Errors of Decode, for callers that count malformed messages by kind.
var (
	ErrEmpty          = errors.New("empty task message")
	ErrUnknownVersion = errors.New("unknown task format version")
	ErrMalformed      = errors.New("malformed task message")
)

func (t *Task) validate() error {
	switch {
	case t.UID == "":
		return fmt.Errorf("%w: no Website UID", ErrMalformed)
	case uuid.Validate(t.UID) != nil:
		return fmt.Errorf("%w: Website UID %.40q is not a UUID", ErrMalformed, t.UID)
	case t.URL == "":
		return fmt.Errorf("%w: no URL", ErrMalformed)
	case t.ScheduledAt.IsZero() || t.Deadline.IsZero():
		return fmt.Errorf("%w: no scheduledAt or deadline", ErrMalformed)
	}
	return nil
}
