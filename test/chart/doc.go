// Package chart tests the Helm chart in charts/webmon: that its CRDs and
// RBAC rules are the generated ones, that it lints and renders with its
// defaults and with every optional feature on, that its schema rejects
// wrong values, and that a real kube-apiserver accepts what it renders.
package chart
