// Command etcd is etcd's own main, built from this wrapper module because
// `go install` refuses modules whose go.mod carries replace directives.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
