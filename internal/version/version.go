// Package version holds webmon's build information, set at link time:
//
//	go build -ldflags "-X github.com/webmon-dev/webmon/internal/version.Version=v0.1.0 \
//	  -X github.com/webmon-dev/webmon/internal/version.Commit=$(git rev-parse HEAD)"
package version

import (
	"fmt"
	"runtime"
)

var (
	// Version is the release, or "dev" for a local build.
	Version = "dev"
	// Commit is the git commit the binary was built from.
	Commit = "unknown"
)

// String is the one-line description `webmon version` prints.
func String() string {
	return fmt.Sprintf("webmon %s (commit %s, %s, %s/%s)", Version, Commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// UserAgent is the User-Agent header of webmon's checks.
func UserAgent() string { return "webmon/" + Version }
