# syntax=docker/dockerfile:1
#
# sipproxy container image: a static binary on distroless, run as a non-root
# user, configuration and rules mounted at /etc/sipproxy.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t sipproxy .
#   docker run -d --name sipproxy --stop-timeout 45 --ulimit nofile=65536:65536 \
#     -v /srv/sipproxy:/etc/sipproxy:ro -v sipproxy-state:/var/lib/sipproxy \
#     -p 5060:5060/udp -p 5060:5060/tcp -p 5061:5061/tcp -p 9090:9090/tcp sipproxy
#
# /etc/sipproxy must hold sipproxy.yaml and whatever it names (certificates,
# the rules file); relative paths in it are relative to /etc/sipproxy. In a
# container set metrics.listen to "0.0.0.0:9090" so Prometheus can scrape
# it. docs/deployment.md has the details, including why --stop-timeout
# must exceed -drain-timeout.
#
# Open files: every TCP/TLS connection is a descriptor. An image cannot set
# its own limit; give the container one above the phones it serves plus a
# margin (--ulimit nofile=N:N, or the runtime's default-ulimits). The binary
# raises its soft limit to one below that hard limit by itself (Go's runtime
# does); it runs as a non-root user, so it cannot raise the hard limit.
#
# cmd/sipproxy/ops_test.go builds the binary with the RUN go build line below,
# exactly as written, and checks the user, ports, volume and health check
# against the code's defaults: keep them in step.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /sipproxy ./cmd/sipproxy
# The state directory (state: {backend: file, path: /var/lib/sipproxy/state.db}),
# made here: the runtime image has no shell to make it in.
RUN mkdir -p /state

# distroless/static: CA certificates (the system roots for TLS next hops
# without server.tls_client.ca), tzdata, /etc/passwd with nonroot (65532);
# no shell, no curl: the health check is the binary itself.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /sipproxy /sipproxy
COPY --from=build --chown=65532:65532 /state /var/lib/sipproxy
USER 65532:65532
# SIP over UDP and TCP, SIP over TLS, metrics with /healthz and /readyz.
EXPOSE 5060/udp 5060/tcp 5061/tcp 9090/tcp
# Configuration (read-only), and the state file that outlives the container.
VOLUME ["/etc/sipproxy", "/var/lib/sipproxy"]
# SIGTERM drains (see -drain-timeout, 35s by default).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/sipproxy", "healthcheck", "-config", "/etc/sipproxy/sipproxy.yaml"]
ENTRYPOINT ["/sipproxy", "run", "-config", "/etc/sipproxy/sipproxy.yaml"]
