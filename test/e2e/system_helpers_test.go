package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/test/testbed"
	sys "github.com/webmon-dev/webmon/test/testbed/system"
)

const (
	namespace = sys.Namespace
	release   = sys.Release
	// interval of the test's Websites: the shortest the API takes.
	interval = 5 * time.Second
	// checkerGroup is the chart's default consumer group.
	checkerGroup = sys.CheckerGroup
)

// system is webmon as test/testbed/system runs it, with what this test
// adds: the Websites it deleted.
type system struct {
	*sys.System
	deleted map[string]bool
}

// on is the system as seen by a subtest.
func (s *system) on(t *testing.T) *system {
	return &system{System: s.On(t), deleted: s.deleted}
}

// demoWebsite is a Website of config/samples/demo with its URL placeholders
// pointing at the test's sites and the test's interval.
func (s *system) demoWebsite(file string) *monitoringv1alpha1.Website {
	s.T.Helper()
	b, err := os.ReadFile(filepath.Join(testbed.RepoRoot(), "config", "samples", "demo", file))
	s.Must(err)
	text := strings.NewReplacer("${DEMO_HEALTHY_URL}", s.Sites.Healthy.URL+"/", "${DEMO_BROKEN_URL}", s.Sites.Broken.URL+"/").Replace(string(b))
	ws := &monitoringv1alpha1.Website{}
	s.Must(yaml.UnmarshalStrict([]byte(text), ws))
	ws.Spec.Interval = metav1.Duration{Duration: interval}
	return ws
}

// loadWebsite checks paths of the healthy site at the test's interval.
func (s *system) loadWebsite(name string, paths ...string) *monitoringv1alpha1.Website {
	ws := &monitoringv1alpha1.Website{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	for _, p := range paths {
		ws.Spec.URLs = append(ws.Spec.URLs, monitoringv1alpha1.WebsiteURL(s.Sites.Healthy.URL+p))
	}
	ws.Spec.Interval = metav1.Duration{Duration: interval}
	ws.Spec.Timeout = metav1.Duration{Duration: 2 * time.Second}
	return ws
}

func (s *system) website(ctx context.Context, name string) (*monitoringv1alpha1.Website, error) {
	ws := &monitoringv1alpha1.Website{}
	return ws, s.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, ws)
}

// stored counts the results of regular (trigger 0) checks per URL scheduled
// in [from, to).
func (s *system) stored(ctx context.Context, urls []string, from, to time.Time) (map[string]int, error) {
	rows, err := s.DB.Query(ctx, `SELECT url, count(*) FROM check_results
		WHERE trigger = 0 AND url = ANY($1) AND scheduled_at >= $2 AND scheduled_at < $3 GROUP BY url`, urls, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var url string
		var n int
		if err := rows.Scan(&url, &n); err != nil {
			return nil, err
		}
		counts[url] = n
	}
	return counts, rows.Err()
}

// websiteTable is what `kubectl get websites` shows: the API server's
// table of the CRD's printer columns, by Website name and column name.
func (s *system) websiteTable(ctx context.Context) (map[string]map[string]string, error) {
	raw, err := s.Clientset.Discovery().RESTClient().Get().
		AbsPath("/apis/monitoring.webmon.dev/v1alpha1/namespaces/default/websites").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		return nil, err
	}
	rows := map[string]map[string]string{}
	for _, r := range table.Rows {
		row := map[string]string{}
		for i, col := range table.ColumnDefinitions {
			if i < len(r.Cells) && r.Cells[i] != nil {
				row[col.Name] = fmt.Sprint(r.Cells[i])
			}
		}
		rows[row["Name"]] = row
	}
	return rows, nil
}
