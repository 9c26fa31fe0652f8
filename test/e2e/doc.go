// Package e2e holds the tests of webmon as a whole on a full local control
// plane (see test/testbed/controlplane). `make test-e2e` runs them alone;
// `make test` runs them with everything else.
package e2e
