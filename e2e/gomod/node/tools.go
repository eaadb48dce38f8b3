//go:build tools

// Package tools pins the node commands that e2e/build compiles for the harness's real nodes, so
// `go mod tidy` keeps them.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
