package scale

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webmon-dev/webmon/test/testbed"
)

// targetsPeerEnv makes the test binary the target servers' process, so
// that their CPU time is counted apart from webmon's and the harness's.
const targetsPeerEnv = "WEBMON_SCALE_TARGETS_PEER"

// targetPage is what every target answers: 2.6 kB of HTML, the checker
// benchmark's page, so that the figures compare.
var targetPage = "<!doctype html><html><head><title>Shop</title><script src=/app.js></script></head><body>" +
	strings.Repeat(`<div class="item"><a href="/p">Product</a> <img src="/i.png"> <p>a few words of description here</p></div>`, 24) +
	"</body></html>"

func TestMain(m *testing.M) {
	if n, err := strconv.Atoi(os.Getenv(targetsPeerEnv)); err == nil && n > 0 {
		os.Exit(serveTargets(n))
	}
	os.Exit(m.Run())
}

// serveTargets serves n target servers on loopback until stdin closes,
// after printing their addresses.
func serveTargets(n int) int {
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, targetPage)
		})}
		go func() { _ = srv.Serve(ln) }()
		addrs[i] = ln.Addr().String()
	}
	testbed.ServePeer("targets=" + strings.Join(addrs, ","))
	return 0
}

// targetServers is the running target servers' process.
type targetServers struct {
	pid   int
	addrs []string
}

func startTargets(t *testing.T, n int) *targetServers {
	t.Helper()
	p := testbed.StartPeer(t, targetsPeerEnv+"="+strconv.Itoa(n), "targets")
	return &targetServers{pid: p.Pid, addrs: p.List("targets")}
}
