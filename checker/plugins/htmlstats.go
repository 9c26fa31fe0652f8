package plugins

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// htmlMetrics are the values html-stats measures, in the order its
// messages list them.
var htmlMetrics = []string{"bytes", "tags", "words", "links", "scripts", "images"}

// htmlStats measures a page and flags a measurement far from the URL's
// running mean, such as a page that lost its content or gained scripts.
//
// It measures any body, whatever its content type: a JSON or text body
// has no tags, which stays constant, while its size and words still show
// drift; and the values of a URL stay comparable from check to check.
type htmlStats struct{}

type htmlStatsConfig struct {
	minSamples int64
	sigma      float64
}

func newHTMLStats() Plugin { return htmlStats{} }

var _ Stateful = htmlStats{}

func (htmlStats) Name() string { return monitoringv1alpha1.PluginHTMLStats }

func (htmlStats) Validate(config map[string]string) error {
	_, err := parseHTMLStats(config)
	return err
}

func parseHTMLStats(config map[string]string) (htmlStatsConfig, error) {
	c := htmlStatsConfig{minSamples: 10, sigma: 3}
	if err := checkKeys(config, "minSamples", "sigma"); err != nil {
		return c, err
	}
	if v, ok := config["minSamples"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 2 || n > 100000 {
			return c, fmt.Errorf("minSamples %q: want a whole number of checks from 2 to 100000", truncate(v, 64))
		}
		c.minSamples = n
	}
	if v, ok := config["sigma"]; ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || f <= 0 || f > 1000 {
			return c, fmt.Errorf("sigma %q: want a number of standard deviations above 0, such as 3 or 2.5", truncate(v, 64))
		}
		c.sigma = f
	}
	return c, nil
}

// Run measures the body of a response that passed its check. A page that
// failed (an error or maintenance page) is not the page: its figures would
// skew the page's statistics, and the check's failure already says so.
func (p htmlStats) Run(ctx context.Context, in *Input) (Result, bool) {
	if _, err := parseHTMLStats(in.Config); err != nil {
		return Result{Name: p.Name(), Outcome: Error, Message: "invalid config: " + err.Error()}, true
	}
	if in.CheckFailed || in.Response.Failed() || len(in.Response.Body) == 0 {
		return Result{}, false
	}
	values, ok := measureHTML(ctx, in.Response.Body)
	if !ok {
		return Result{}, false
	}
	values["bytes"] = float64(in.Response.BodyBytes)
	return Result{Name: p.Name(), Outcome: OK, Values: values}, true
}

// measureHTML counts a page's start tags, links, scripts, images and the
// words of its text outside scripts and styles. It reads the body once, as
// tokens, and tolerates anything: unclosed tags, invalid UTF-8, binary
// data. It gives up, false, when ctx ends.
func measureHTML(ctx context.Context, body []byte) (map[string]float64, bool) {
	var tags, links, scripts, images, words int
	z := html.NewTokenizer(bytes.NewReader(body))
	inRaw := false // in the text of a script or style
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return nil, false
		}
		switch z.Next() {
		case html.ErrorToken: // io.EOF, or the end of what the tokenizer can read
			return map[string]float64{
				"tags": float64(tags), "links": float64(links), "scripts": float64(scripts),
				"images": float64(images), "words": float64(words),
			}, true
		case html.StartTagToken, html.SelfClosingTagToken:
			tags++
			name, hasAttr := z.TagName()
			switch atom.Lookup(name) {
			case atom.A:
				if hasHref(z, hasAttr) {
					links++
				}
			case atom.Img:
				images++
			case atom.Script:
				scripts++
				inRaw = true
			case atom.Style:
				inRaw = true
			}
		case html.EndTagToken:
			inRaw = false
		case html.TextToken:
			if !inRaw {
				words += countWords(z.Text())
			}
		}
	}
}

func hasHref(z *html.Tokenizer, more bool) bool {
	for more {
		var key []byte
		key, _, more = z.TagAttr()
		if string(key) == "href" {
			return true
		}
	}
	return false
}

// countWords counts runs of characters between white space; invalid
// UTF-8 counts as a character.
func countWords(text []byte) int {
	words, inWord := 0, false
	for len(text) > 0 {
		r, size := utf8.DecodeRune(text)
		text = text[size:]
		space := unicode.IsSpace(r)
		if !space && !inWord {
			words++
		}
		inWord = !space
	}
	return words
}

// Judge compares each measured value with the URL's running mean: a value
// more than sigma standard deviations away is a Warning, more than twice
// sigma an Error. Until every value has minSamples checks it is learning,
// OK. The measurement is then counted, unless a check scheduled at or
// after it already was (a redelivery).
func (p htmlStats) Judge(config map[string]string, scheduledAt time.Time, measured Result, h *History) Result {
	cfg, err := parseHTMLStats(config)
	if err != nil {
		return Result{Name: p.Name(), Outcome: Error, Message: "invalid config: " + err.Error()}
	}
	if measured.Outcome != OK || len(measured.Values) == 0 {
		return measured
	}
	if h == nil {
		h = &History{}
	}
	if h.Stats == nil {
		h.Stats = map[string]*RunningStat{}
	}
	r := Result{Name: p.Name(), Outcome: OK, Values: measured.Values}
	var flagged []string
	judged, learning := 0, false
	var seen int64 = math.MaxInt64
	for _, name := range htmlMetrics {
		x, ok := measured.Values[name]
		if !ok {
			continue
		}
		st := h.Stats[name]
		if st == nil || st.N < cfg.minSamples {
			learning = true
			continue
		}
		judged++
		seen = min(seen, st.N)
		z := (x - st.Mean) / deviationFloor(st)
		switch {
		case math.Abs(z) > 2*cfg.sigma:
			r.Outcome = Error
		case math.Abs(z) > cfg.sigma:
			if r.Outcome == OK {
				r.Outcome = Warning
			}
		default:
			continue
		}
		dir := "above"
		if z < 0 {
			dir = "below"
		}
		flagged = append(flagged, fmt.Sprintf("%s %s is %.1fσ %s the mean %s", name, number(x), math.Abs(z), dir, number(st.Mean)))
	}

	counted := scheduledAt.After(h.LastScheduledAt)
	if counted {
		for name, x := range measured.Values {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				continue
			}
			if h.Stats[name] == nil {
				h.Stats[name] = &RunningStat{}
			}
			h.Stats[name].Add(x)
		}
		h.LastScheduledAt = scheduledAt
	}

	switch {
	case learning || judged == 0:
		r.Outcome = OK
		r.Message = fmt.Sprintf("learning: %d of %d checks", learned(h, measured.Values), cfg.minSamples)
	case len(flagged) > 0:
		r.Message = fmt.Sprintf("%s (%d checks)", strings.Join(flagged, "; "), seen)
	default:
		r.Message = fmt.Sprintf("within %sσ of the means of %d checks", number(cfg.sigma), seen)
	}
	return r
}

// deviationFloor is the standard deviation to measure a distance in, at
// least 1% of the mean and 0.5: a page that never changed has a standard
// deviation of 0, and one more byte or one more tag must not be an
// outlier.
func deviationFloor(st *RunningStat) float64 {
	return max(st.StdDev(), 0.01*math.Abs(st.Mean), 0.5)
}

// learned is how many checks the least-known value has.
func learned(h *History, values map[string]float64) int64 {
	var n int64 = math.MaxInt64
	for name := range values {
		if st := h.Stats[name]; st != nil {
			n = min(n, st.N)
		} else {
			n = 0
		}
	}
	return n
}

// number formats a count as a whole number and anything else with one
// decimal.
func number(x float64) string {
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strconv.FormatFloat(x, 'f', 1, 64)
}
