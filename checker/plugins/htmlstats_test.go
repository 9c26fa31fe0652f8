package plugins

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/webmon-dev/webmon/checker/probe"
)

func TestHTMLStatsMeasure(t *testing.T) {
	tests := map[string]struct {
		contentType, body string
		want              map[string]float64 // bytes is added from the body
	}{
		"a page": {
			contentType: "text/html",
			body: `<!DOCTYPE html><html><head><title>Shop</title>
<script src="/app.js"></script><script>var a = "<b>not a tag</b> words here";</script>
<style>body { color: red }</style></head>
<body><h1>Hello,   world</h1><a href="/a">one</a> <a name="x">anchor</a> <A HREF="/b">two</A>
<img src="x.png"><img src="y.png"/><br/></body></html>`,
			// tags: html head title script script style body h1 a a a img img br
			// words: Shop Hello, world one anchor two
			want: map[string]float64{"tags": 14, "links": 2, "scripts": 2, "images": 2, "words": 6},
		},
		"unclosed tags and garbage": {
			contentType: "text/html",
			body:        "<div><p>one two <a href=x>three <img <<< >>> four\x00 <script>never closed words words",
			// tags: div p a img ("<img <<< >" is one) script
			// words: one two three >> four\x00
			want: map[string]float64{"tags": 5, "links": 1, "scripts": 1, "images": 1, "words": 5},
		},
		"invalid UTF-8": {
			contentType: "text/html",
			body:        "<p>caf\xe9 \xff\xfe bar</p>",
			want:        map[string]float64{"tags": 1, "words": 3},
		},
		"a JSON body is measured too": {
			contentType: "application/json",
			body:        `{"status": "up", "items": [1, 2]}`,
			want:        map[string]float64{"words": 5}, // runs between spaces
		},
		"self-closing script hides the text up to its end tag": {
			contentType: "text/html",
			body:        "<script/>hidden text</script><p>shown</p>",
			want:        map[string]float64{"tags": 2, "scripts": 1, "words": 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv := serve(t, tc.contentType, tc.body)
			got, ok := newHTMLStats().Run(t.Context(), newCheck(t, srv.URL).input())
			if !ok {
				t.Fatal("Run gave no measurement")
			}
			want := Result{Name: "html-stats", Outcome: OK, Values: map[string]float64{
				"bytes": float64(len(tc.body)), "tags": 0, "links": 0, "scripts": 0, "images": 0, "words": 0,
			}}
			for k, v := range tc.want {
				want.Values[k] = v
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Run (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHTMLStatsNothingToMeasure(t *testing.T) {
	empty := serve(t, "text/html", "")
	reset := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte("<html>"))
	}))
	t.Cleanup(reset.Close)
	for name, url := range map[string]string{"empty body": empty.URL, "failed check": reset.URL} {
		if got, ok := newHTMLStats().Run(t.Context(), newCheck(t, url).input()); ok {
			t.Errorf("%s: got %+v, want no measurement", name, got)
		}
	}
	errorPage := &Input{Response: &probe.Response{StatusCode: 503, Body: []byte("<p>down for maintenance</p>"), BodyBytes: 27}, CheckFailed: true}
	if got, ok := newHTMLStats().Run(t.Context(), errorPage); ok {
		t.Errorf("a page that failed its expectations: got %+v, want no measurement", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	in := &Input{Response: &probe.Response{Body: []byte("<p>x</p>"), BodyBytes: 8}}
	if got, ok := newHTMLStats().Run(ctx, in); ok {
		t.Errorf("cancelled: got %+v, want no measurement", got)
	}
}

// series drives Judge over checks one minute apart.
type series struct {
	t      *testing.T
	p      Stateful
	config map[string]string
	h      History
	at     time.Time
}

func newSeries(t *testing.T, config map[string]string) *series {
	return &series{t: t, p: newHTMLStats().(Stateful), config: config, at: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
}

// page measures a page of about size bytes and words words and judges it.
func (s *series) page(size, words int) Result {
	s.t.Helper()
	s.at = s.at.Add(time.Minute)
	return s.judgeAt(s.at, pageOf(size, words))
}

func (s *series) judgeAt(at time.Time, body string) Result {
	s.t.Helper()
	measured, ok := s.p.Run(s.t.Context(), &Input{Config: s.config, Response: &probe.Response{Body: []byte(body), BodyBytes: len(body)}})
	if !ok {
		s.t.Fatal("Run gave no measurement")
	}
	return s.p.Judge(s.config, at, measured, &s.h)
}

// pageOf is an HTML page of words words padded with a comment to size
// bytes.
func pageOf(size, words int) string {
	page := "<html><body><p>" + strings.Repeat("word ", words) + "</p></body></html>"
	if pad := size - len(page) - 7; pad > 0 {
		page += "<!--" + strings.Repeat("x", pad) + "-->"
	}
	return page
}

func TestHTMLStatsJudge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	noisy := func(mean, spread int) int { return mean - spread + rng.IntN(2*spread+1) }

	t.Run("warm-up is OK and says how far it got", func(t *testing.T) {
		s := newSeries(t, nil)
		for i := 1; i <= 10; i++ {
			got := s.page(noisy(10000, 100), 100)
			want := Result{Outcome: OK, Message: fmt.Sprintf("learning: %d of 10 checks", i)}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Result{}, "Name", "Values")); diff != "" {
				t.Fatalf("check %d (-want +got):\n%s", i, diff)
			}
		}
		// The 11th is judged, even a page ten times bigger.
		if got := s.page(100000, 100); got.Outcome != Error {
			t.Errorf("first judged check: got %+v, want Error", got)
		}
	})

	t.Run("a page ten times bigger after 20 normal ones", func(t *testing.T) {
		s := newSeries(t, nil)
		for range 20 {
			s.page(noisy(10000, 200), noisy(500, 20))
		}
		st := *s.h.Stats["bytes"]
		got := s.page(100000, 500)
		if got.Outcome != Error {
			t.Fatalf("got %+v, want Error", got)
		}
		z := (100000 - st.Mean) / st.StdDev()
		want := fmt.Sprintf("bytes 100000 is %.1fσ above the mean %s (20 checks)", z, number(st.Mean))
		if got.Message != want {
			t.Errorf("message %q, want %q", got.Message, want)
		}
	})

	t.Run("a page within the noise", func(t *testing.T) {
		s := newSeries(t, nil)
		for range 20 {
			s.page(noisy(10000, 200), noisy(500, 20))
		}
		if got := s.page(10150, 510); got.Outcome != OK || !strings.HasPrefix(got.Message, "within 3σ of the means of 20 checks") {
			t.Errorf("got %+v, want OK within 3σ", got)
		}
	})

	t.Run("warning between sigma and twice sigma, below the mean", func(t *testing.T) {
		s := newSeries(t, map[string]string{"sigma": "2", "minSamples": "5"})
		for _, size := range []int{1000, 1100, 1000, 1100, 1000, 1100} {
			s.page(size, 10)
		}
		st := *s.h.Stats["bytes"]
		size := int(st.Mean - 3*st.StdDev()) // 3σ below: a Warning at sigma 2
		got := s.page(size, 10)
		want := fmt.Sprintf("bytes %d is 3.0σ below the mean %s (6 checks)", size, number(st.Mean))
		if got.Outcome != Warning || got.Message != want {
			t.Errorf("got %v %q, want Warning %q", got.Outcome, got.Message, want)
		}
	})

	t.Run("a constant page changed by one byte or one word", func(t *testing.T) {
		s := newSeries(t, nil)
		for range 12 {
			s.page(5000, 50)
		}
		if got := s.page(5001, 51); got.Outcome != OK {
			t.Errorf("got %+v, want OK: a zero standard deviation is floored", got)
		}
	})

	t.Run("several metrics: the worst verdict, all named, in order", func(t *testing.T) {
		s := newSeries(t, map[string]string{"minSamples": "3"})
		for range 3 {
			s.page(5000, 50)
		}
		// bytes: floor 1% of 5000 = 50, +200 is 4σ (Warning); words:
		// floor 0.5, 50 -> 40 is 20σ (Error).
		got := s.page(5200, 40)
		want := "bytes 5200 is 4.0σ above the mean 5000; words 40 is 20.0σ below the mean 50 (3 checks)"
		if got.Outcome != Error || got.Message != want {
			t.Errorf("got %v %q, want Error %q", got.Outcome, got.Message, want)
		}
	})

	t.Run("a redelivered check is judged, not counted again", func(t *testing.T) {
		s := newSeries(t, nil)
		for range 5 {
			s.page(5000, 50)
		}
		last := s.at
		before := *s.h.Stats["bytes"]
		for _, at := range []time.Time{last, last.Add(-time.Hour)} {
			got := s.judgeAt(at, pageOf(9000, 50))
			if got.Message != "learning: 5 of 10 checks" {
				t.Errorf("redelivery at %s: message %q", at, got.Message)
			}
		}
		if diff := cmp.Diff(before, *s.h.Stats["bytes"]); diff != "" || !s.h.LastScheduledAt.Equal(last) {
			t.Errorf("redeliveries changed the history, lastScheduledAt %s (-before +after):\n%s", s.h.LastScheduledAt, diff)
		}
	})

	t.Run("Welford agrees with a two-pass computation", func(t *testing.T) {
		s := newSeries(t, nil)
		var xs []float64
		for range 500 {
			// A large mean and a small spread, where naive sums of
			// squares lose their precision.
			x := 1e9 + float64(noisy(0, 3000)) + 0.25
			s.at = s.at.Add(time.Minute)
			s.p.Judge(nil, s.at, Result{Outcome: OK, Values: map[string]float64{"bytes": x}}, &s.h)
			xs = append(xs, x)
		}
		mean, sd := twoPass(xs)
		st := s.h.Stats["bytes"]
		if st.N != 500 || math.Abs(st.Mean-mean) > 1e-6 || math.Abs(st.StdDev()-sd) > 1e-6 {
			t.Errorf("running stat %+v (sd %v), want n 500, mean %v, sd %v", *st, st.StdDev(), mean, sd)
		}
	})
}

func twoPass(xs []float64) (mean, sd float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(xs)-1))
}

func TestRunningStatSmall(t *testing.T) {
	var s RunningStat
	if s.StdDev() != 0 {
		t.Errorf("empty: sd %v", s.StdDev())
	}
	s.Add(4)
	if s.StdDev() != 0 || s.Mean != 4 {
		t.Errorf("one sample: %+v", s)
	}
	s.Add(8) // mean 6, sample sd sqrt(8)
	if s.Mean != 6 || math.Abs(s.StdDev()-math.Sqrt(8)) > 1e-12 {
		t.Errorf("two samples: %+v sd %v, want mean 6 sd %v", s, s.StdDev(), math.Sqrt(8))
	}
}
