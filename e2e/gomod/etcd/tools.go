//go:build tools

// Package tools pins etcd's main package (go.etcd.io/etcd/server/v3), which e2e/build compiles.
package tools

import _ "go.etcd.io/etcd/server/v3"
