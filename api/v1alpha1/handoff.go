package v1alpha1

import (
	"strings"
	"time"
)

// ShardHandoff reads the ShardHandoffAnnotation: the shard the Website
// moves to and when its schedulers hand it over; ok is false without a
// well-formed one.
func (ws *Website) ShardHandoff() (shard string, at time.Time, ok bool) {
	to, when, found := strings.Cut(ws.Annotations[ShardHandoffAnnotation], "@")
	if !found {
		return "", time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, when)
	return to, at, err == nil
}
