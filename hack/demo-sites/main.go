// Command demo-sites serves the two local websites that `make demo` monitors,
// since the demo machine need not reach the internet: a healthy one, which
// answers 200 with a small page after a few milliseconds, and a broken one,
// which answers 503. It runs until interrupted.
//
//	go build -o bin/demo-sites ./hack/demo-sites
//	bin/demo-sites --urls-file /tmp/sites.env
//
// Each listens on a free loopback port unless told one; the URLs are printed,
// and written to --urls-file as DEMO_HEALTHY_URL=... and DEMO_BROKEN_URL=...
// lines once both are listening.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	healthy := flag.String("healthy-addr", "127.0.0.1:0", "listen address of the healthy site")
	broken := flag.String("broken-addr", "127.0.0.1:0", "listen address of the broken site")
	urlsFile := flag.String("urls-file", "", "file to write the sites' URLs to, as NAME=URL lines")
	flag.Parse()
	if err := run(*healthy, *broken, *urlsFile); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(healthyAddr, brokenAddr, urlsFile string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sites := []struct {
		env, addr string
		handler   http.HandlerFunc
	}{
		{"DEMO_HEALTHY_URL", healthyAddr, healthySite},
		{"DEMO_BROKEN_URL", brokenAddr, brokenSite},
	}
	var urls string
	errc := make(chan error, len(sites))
	for _, s := range sites {
		l, err := net.Listen("tcp", s.addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: logged(s.handler), ReadHeaderTimeout: 5 * time.Second}
		go func() { errc <- srv.Serve(l) }()
		defer func() { _ = srv.Close() }()
		urls += fmt.Sprintf("%s=http://%s/\n", s.env, l.Addr())
	}
	fmt.Print(urls)
	if urlsFile != "" {
		if err := os.WriteFile(urlsFile, []byte(urls), 0o600); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

func healthySite(w http.ResponseWriter, _ *http.Request) {
	time.Sleep(5 * time.Millisecond) // a latency worth showing
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = fmt.Fprintln(w, "<!doctype html><title>demo shop</title><h1>Welcome to the demo shop</h1><p>All systems go.</p>")
}

func brokenSite(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
}

// logged prints one line per request: the checks arriving are the demo.
func logged(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h(w, r)
		fmt.Printf("%s %s %s %s %s\n", start.Format(time.RFC3339), r.Host, r.Method, r.URL.Path, r.UserAgent())
	})
}
