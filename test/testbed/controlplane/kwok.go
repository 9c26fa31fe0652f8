package controlplane

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/yaml"
)

var (
	nodeStages = []string{"node-initialize", "node-heartbeat"}
	podStages  = []string{"pod-ready", "pod-complete", "pod-delete"}
)

// kwokStages are the paths of kwok's stage files. With LocalPods, the pod
// stages are copies that skip those pods, written into the state folder.
func (cp *ControlPlane) kwokStages() ([]string, error) {
	var paths []string
	for _, s := range nodeStages {
		paths = append(paths, filepath.Join(cp.tools.KwokStages, s+".yaml"))
	}
	if cp.localPods == "" {
		for _, s := range podStages {
			paths = append(paths, filepath.Join(cp.tools.KwokStages, s+".yaml"))
		}
		return paths, nil
	}
	matches, err := jqSelector(cp.localPods)
	if err != nil {
		return nil, fmt.Errorf("LocalPods: %w", err)
	}
	for _, s := range podStages {
		p, err := writeStageExcept(filepath.Join(cp.tools.KwokStages, s+".yaml"), filepath.Join(cp.Dir, "kwok"), matches)
		if err != nil {
			return nil, fmt.Errorf("kwok stage %s: %w", s, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// writeStageExcept copies a stage file into dir with one more selector
// requirement: the jq expression matches must not be true.
func writeStageExcept(src, dir, matches string) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	var stage map[string]any
	if err := yaml.Unmarshal(b, &stage); err != nil {
		return "", err
	}
	spec, _ := stage["spec"].(map[string]any)
	selector, _ := spec["selector"].(map[string]any)
	if selector == nil {
		return "", fmt.Errorf("%s has no spec.selector", src)
	}
	exprs, _ := selector["matchExpressions"].([]any)
	selector["matchExpressions"] = append(exprs, map[string]any{
		"key": matches, "operator": "NotIn", "values": []any{"true"},
	})
	if b, err = yaml.Marshal(stage); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, filepath.Base(src))
	return dst, os.WriteFile(dst, b, 0o600)
}

// jqSelector turns a label selector into the jq expression, over a pod,
// that kwok's stage selectors evaluate. A missing label is null in jq, so
// != and notin match pods without the label, as in Kubernetes.
func jqSelector(selector string) (string, error) {
	reqs, err := labels.ParseToRequirements(selector)
	if err != nil {
		return "", err
	}
	if len(reqs) == 0 {
		return "", fmt.Errorf("%q selects every pod", selector)
	}
	terms := make([]string, 0, len(reqs))
	for _, r := range reqs {
		label := ".metadata.labels[" + strconv.Quote(r.Key()) + "]"
		var vals []string
		for _, v := range slices.Sorted(slices.Values(r.ValuesUnsorted())) {
			vals = append(vals, strconv.Quote(v))
		}
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			terms = append(terms, "("+label+" == "+strings.Join(vals, " or "+label+" == ")+")")
		case selection.NotEquals, selection.NotIn:
			terms = append(terms, "("+label+" != "+strings.Join(vals, " and "+label+" != ")+")")
		case selection.Exists:
			terms = append(terms, label+" != null")
		case selection.DoesNotExist:
			terms = append(terms, label+" == null")
		default:
			return "", fmt.Errorf("%q: kwok's stages take no %s requirement", selector, r.Operator())
		}
	}
	return strings.Join(terms, " and "), nil
}
