// CoreDNS with only the plugins the test node needs: cluster DNS (the kubernetes plugin) on the
// node's bridge address, so pods resolve Services by name as in any cluster. This is CoreDNS's
// documented way to build with a chosen set of plugins (an external main that sets the
// directives); nothing else of CoreDNS is changed.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

func init() {
	dnsserver.Directives = []string{"bind", "errors", "kubernetes"}
}

func main() {
	coremain.Run()
}
