package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"

	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/util/jsonpath"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// Bounds on json-path's work: the body is at most the probe's limit, and
// these keep an expression from multiplying it (a second recursive descent
// or unions of unions walk the document many times over) or from printing
// more than a message can hold.
const (
	maxJSONPathExprLen   = 512
	maxJSONPathRegexLen  = 1024
	maxJSONPathRecursive = 1
	maxJSONPathFanout    = 64
	maxJSONPathOutput    = 64 << 10
)

// jsonPath asserts the value a JSONPath expression prints from a JSON
// body, as `kubectl get -o jsonpath` prints it: a string without quotes,
// a number as written, an object or a list as JSON.
type jsonPath struct{}

type jsonPathConfig struct {
	// expr is the expression in braces, as the JSONPath parser takes it.
	expr    string
	equals  *string
	matches *regexp.Regexp
}

func newJSONPath() Plugin { return jsonPath{} }

func (jsonPath) Name() string { return monitoringv1alpha1.PluginJSONPath }

func (jsonPath) Validate(config map[string]string) error {
	_, err := parseJSONPath(config)
	return err
}

func parseJSONPath(config map[string]string) (jsonPathConfig, error) {
	var c jsonPathConfig
	if err := checkKeys(config, "expr", "equals", "matches"); err != nil {
		return c, err
	}
	expr, ok := config["expr"]
	expr = strings.TrimSpace(expr)
	switch {
	case !ok || expr == "":
		return c, errors.New(`expr: required, a JSONPath such as {.status} or .items[0].state`)
	case !utf8.ValidString(expr):
		return c, fmt.Errorf("expr %q: not valid UTF-8", truncate(strings.ToValidUTF8(expr, "\uFFFD"), 64))
	case len(expr) > maxJSONPathExprLen:
		return c, fmt.Errorf("expr %q: want a JSONPath of at most %d characters", truncate(expr, 64), maxJSONPathExprLen)
	}
	if !strings.HasPrefix(expr, "{") {
		expr = "{" + expr + "}"
	}
	if _, err := compileJSONPath(expr); err != nil {
		// The parser's message quotes the expression as given: cut and
		// made valid UTF-8, as a status holds it.
		return c, fmt.Errorf("expr %q: want a JSONPath such as {.status} or .items[0].state: %s",
			truncate(config["expr"], 64), truncate(strings.ToValidUTF8(err.Error(), "\uFFFD"), 200))
	}
	c.expr = expr

	equals, hasEquals := config["equals"]
	pattern, hasMatches := config["matches"]
	switch {
	case hasEquals == hasMatches:
		return c, errors.New("equals, matches: want exactly one of them, the value expected or a regular expression it must match")
	case hasEquals:
		c.equals = &equals
	case len(pattern) > maxJSONPathRegexLen:
		return c, fmt.Errorf("matches %q: want a regular expression of at most %d characters", truncate(pattern, 64), maxJSONPathRegexLen)
	default:
		re, err := regexp.Compile(pattern)
		if err != nil {
			return c, fmt.Errorf("matches %q: want an RE2 regular expression: %s", truncate(pattern, 64), regexpReason(err))
		}
		c.matches = re
	}
	return c, nil
}

// compileJSONPath parses expr and bounds what it may cost. A JSONPath
// holds state while it runs, so every check compiles its own.
func compileJSONPath(expr string) (j *jsonpath.JSONPath, err error) {
	defer func() {
		if r := recover(); r != nil {
			j, err = nil, errors.New("the expression cannot be parsed")
		}
	}()
	p, err := jsonpath.Parse("expr", expr)
	if err != nil {
		return nil, err
	}
	recursive, fanout := 0, 1
	walkJSONPath(p.Root, &recursive, &fanout)
	switch {
	case recursive > maxJSONPathRecursive:
		return nil, errors.New("at most one recursive descent (..)")
	case fanout > maxJSONPathFanout:
		return nil, fmt.Errorf("unions select at most %d branches in all", maxJSONPathFanout)
	}
	j = jsonpath.New("expr")
	return j, j.Parse(expr)
}

func walkJSONPath(n jsonpath.Node, recursive, fanout *int) {
	switch n := n.(type) {
	case *jsonpath.ListNode:
		for _, c := range n.Nodes {
			walkJSONPath(c, recursive, fanout)
		}
	case *jsonpath.RecursiveNode:
		*recursive++
	case *jsonpath.UnionNode:
		*fanout = min(*fanout*max(len(n.Nodes), 1), maxJSONPathFanout+1)
		for _, c := range n.Nodes {
			walkJSONPath(c, recursive, fanout)
		}
	case *jsonpath.FilterNode:
		walkJSONPath(n.Left, recursive, fanout)
		walkJSONPath(n.Right, recursive, fanout)
	}
}

func (p jsonPath) Run(ctx context.Context, in *Input) (Result, bool) {
	cfg, err := parseJSONPath(in.Config)
	if err != nil {
		return Result{Name: p.Name(), Outcome: Error, Message: "invalid config: " + err.Error()}, true
	}
	if in.Response.Failed() || ctx.Err() != nil {
		return Result{}, false
	}
	r := Result{Name: p.Name(), Outcome: Error}
	body := bytes.TrimSpace(in.Response.Body)
	if len(body) == 0 {
		r.Message = "body is empty, not JSON"
		return r, true
	}
	var doc any
	if err := utiljson.Unmarshal(body, &doc); err != nil {
		r.Message = "body is not JSON: " + truncate(strings.TrimPrefix(err.Error(), "json: "), 120)
		return r, true
	}
	value, found, err := evalJSONPath(cfg.expr, doc)
	switch {
	case err != nil:
		r.Message = fmt.Sprintf("%s: %s", cfg.expr, truncate(err.Error(), 120))
		return r, true
	case !found:
		r.Message = fmt.Sprintf("%s not found in the body", cfg.expr)
		return r, true
	case cfg.equals != nil && value != *cfg.equals:
		r.Message = fmt.Sprintf("%s is %q, want %q", cfg.expr, truncate(value, 80), truncate(*cfg.equals, 80))
		return r, true
	case cfg.matches != nil && !cfg.matches.MatchString(value):
		r.Message = fmt.Sprintf("%s is %q, want a match of %q", cfg.expr, truncate(value, 80), truncate(cfg.matches.String(), 80))
		return r, true
	}
	r.Outcome = OK
	r.Message = fmt.Sprintf("%s is %q", cfg.expr, truncate(value, 80))
	return r, true
}

var errJSONPathOutput = fmt.Errorf("the value is longer than %d KiB", maxJSONPathOutput>>10)

// evalJSONPath prints what expr selects from doc, as kubectl does; found
// is false when it selects nothing. A missing key or index is not found,
// not an error.
func evalJSONPath(expr string, doc any) (value string, found bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			value, found, err = "", false, errors.New("the expression cannot be evaluated on this body")
		}
	}()
	j, err := compileJSONPath(expr)
	if err != nil {
		return "", false, err
	}
	results, err := j.FindResults(doc)
	if err != nil {
		if notFound(err) {
			return "", false, nil
		}
		return "", false, err
	}
	out := &cappedBuffer{limit: maxJSONPathOutput}
	for _, values := range results {
		if len(values) > 0 {
			found = true
		}
		if err := j.PrintResults(out, values); err != nil {
			return "", found, err
		}
	}
	return out.String(), found, nil
}

// notFound reports the JSONPath errors that mean the path is not in the
// document.
func notFound(err error) bool {
	msg := err.Error()
	return strings.HasSuffix(msg, " is not found") || strings.HasPrefix(msg, "array index out of bounds")
}

// cappedBuffer fails a write past limit.
type cappedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, errJSONPathOutput
	}
	return b.Buffer.Write(p)
}

// regexpReason is the regexp error without the package's prefix.
func regexpReason(err error) string {
	var syntaxErr *syntax.Error
	if errors.As(err, &syntaxErr) {
		return string(syntaxErr.Code)
	}
	return err.Error()
}
