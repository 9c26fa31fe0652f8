# webmon's one image: every component is a subcommand of /webmon, the
# entrypoint (the operator's scheduler pods give only args).
#
#   docker build --build-arg VERSION=0.1.0 --build-arg COMMIT=$(git rev-parse --short HEAD) \
#     -t ghcr.io/webmon-dev/webmon:0.1.0 .

# The builder runs on the build machine's platform and cross-compiles.
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
# Dependencies first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
# The packages the binary is built from (see .dockerignore for the rest).
COPY api/ api/
COPY checker/ checker/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY scheduler/ scheduler/
# As the Makefile's GOFLAGS_BUILD: static, reproducible, versioned.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=$TARGETARCH go build -trimpath \
    -ldflags "-s -w \
      -X github.com/webmon-dev/webmon/internal/version.Version=$VERSION \
      -X github.com/webmon-dev/webmon/internal/version.Commit=$COMMIT" \
    -o /out/webmon ./cmd/webmon

# No shell, no package manager; CA certificates and tzdata included.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/webmon /webmon
USER 65532:65532
ENTRYPOINT ["/webmon"]
