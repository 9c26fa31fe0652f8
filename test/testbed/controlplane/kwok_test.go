package controlplane

import "testing"

func TestJQSelector(t *testing.T) {
	for sel, want := range map[string]string{
		"app.kubernetes.io/part-of=webmon": `(.metadata.labels["app.kubernetes.io/part-of"] == "webmon")`,
		"a in (x,y),b":                     `(.metadata.labels["a"] == "x" or .metadata.labels["a"] == "y") and .metadata.labels["b"] != null`,
		"a!=x,!b":                          `(.metadata.labels["a"] != "x") and .metadata.labels["b"] == null`,
	} {
		got, err := jqSelector(sel)
		if err != nil || got != want {
			t.Errorf("jqSelector(%q) = %s, %v; want %s", sel, got, err, want)
		}
	}
	for _, sel := range []string{"", "a>1"} {
		if got, err := jqSelector(sel); err == nil {
			t.Errorf("jqSelector(%q) = %s, want an error", sel, got)
		}
	}
}
