package chart

import (
	"fmt"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/webmon-dev/webmon/test/testbed"
)

// access is one question to the API server's authorizer: may the
// component do verb on the resource (group/resource[/subresource]) in
// namespace ("" for the cluster)?
type access struct {
	verb, group, resource, subresource, namespace string
	allowed                                       bool
}

// TestLeastPrivilege installs the chart's ServiceAccounts and RBAC (every
// feature on, Secrets readable in shop and billing) in a real API server
// and asks its authorizer, with SubjectAccessReviews, what each component
// may do: what the design needs, and nothing around it. Above all the
// checker reads Secrets only by name, only in the namespaces it is given,
// and cannot change a Website's spec; nobody else reads Secrets.
func TestLeastPrivilege(t *testing.T) {
	_, cfg, stop, err := testbed.StartEnvtest()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, ns := range []string{namespace, "shop", "billing", "other"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	installed := 0
	for _, obj := range render(t, allFeatures...) {
		switch obj.GetKind() {
		case "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding":
			if err := c.Create(ctx, obj); err != nil {
				t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
			}
			installed++
		}
	}
	t.Logf("%d ServiceAccounts and RBAC objects installed", installed)

	const websites, status = "websites", "status"
	const mon = "monitoring.webmon.dev"
	for component, checks := range map[string][]access{
		"checker": {
			{"get", "", "secrets", "", "shop", true},
			{"get", "", "secrets", "", "billing", true},
			{"get", "", "secrets", "", "other", false},
			{"get", "", "secrets", "", namespace, false},
			{"list", "", "secrets", "", "shop", false},
			{"watch", "", "secrets", "", "shop", false},
			{"get", mon, websites, "", "shop", true},
			{"patch", mon, websites, status, "shop", true},
			{"update", mon, websites, "", "shop", false},
			{"patch", mon, websites, "", "shop", false},
			{"delete", mon, websites, "", "shop", false},
			{"create", "events.k8s.io", "events", "", "shop", true},
			{"create", "apps", "deployments", "", namespace, false},
		},
		"scheduler": {
			{"get", "", "secrets", "", "shop", false},
			{"get", "", "secrets", "", namespace, false},
			{"list", mon, websites, "", "", true},
			{"watch", mon, websites, "", "", true},
			{"update", mon, websites, "", "shop", false},
			{"patch", mon, websites, status, "shop", false},
			{"update", "coordination.k8s.io", "leases", "", namespace, true},
			{"update", "coordination.k8s.io", "leases", "", "other", false},
		},
		"operator": {
			{"get", "", "secrets", "", "shop", false},
			{"get", "", "secrets", "", namespace, false},
			{"list", "", "secrets", "", "", false},
			{"create", "apps", "deployments", "", namespace, true},
			{"create", "apps", "deployments", "", "other", false},
			{"update", mon, websites, status, "shop", true},
			{"delete", mon, websites, "", "shop", false},
			{"create", "", "pods", "", namespace, false},
		},
	} {
		user := fmt.Sprintf("system:serviceaccount:%s:%s-%s", namespace, fullname, component)
		for _, a := range checks {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   user,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Namespace: a.namespace,
				},
			}}
			if err := c.Create(ctx, sar); err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed != a.allowed {
				t.Errorf("%s: %s %s/%s/%s in %q: allowed %v, want %v (%s)", component, a.verb, a.group, a.resource, a.subresource,
					a.namespace, sar.Status.Allowed, a.allowed, sar.Status.Reason)
			}
		}
	}
}
