package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/webmon-dev/webmon/test/testbed"
)

// TestDockerfile checks, without a Docker engine, the image the chart runs:
// its entrypoint is the webmon binary (the operator's scheduler pods give
// only args), it runs as the chart's non-root user, it is built as the
// Makefile builds, and the builder is given every package of the binary.
func TestDockerfile(t *testing.T) {
	root := testbed.RepoRoot()
	raw, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(raw)
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"FROM --platform=$BUILDPLATFORM golang:1.26 AS builder",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532",
		`ENTRYPOINT ["/webmon"]`,
		"CGO_ENABLED=0",
		"-trimpath",
		"COPY --from=builder /out/webmon /webmon",
	} {
		if !strings.Contains(dockerfile, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	// The version variables the Makefile sets are the ones the image sets.
	for _, m := range regexp.MustCompile(`-X (\S+)=\$\((\w+)\)`).FindAllStringSubmatch(string(makefile), -1) {
		if want := "-X " + m[1] + "=$" + m[2]; !strings.Contains(dockerfile, want) {
			t.Errorf("the Dockerfile lacks %q, as the Makefile's GOFLAGS_BUILD sets it", want)
		}
	}

	copied := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^COPY (\w+)/ `).FindAllStringSubmatch(dockerfile, -1) {
		copied[m[1]] = true
	}
	ignoreRaw, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ignored := strings.Fields(regexp.MustCompile(`(?m)#.*$`).ReplaceAllString(string(ignoreRaw), ""))
	list := exec.CommandContext(t.Context(), "go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./cmd/webmon")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		top := strings.Split(filepath.ToSlash(rel), "/")[0]
		if !copied[top] {
			t.Errorf("webmon is built from %s, but the Dockerfile does not copy %s/", rel, top)
		}
		if slices.Contains(ignored, top) {
			t.Errorf(".dockerignore leaves out %s/, which webmon is built from", top)
		}
	}
}
