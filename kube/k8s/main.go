// Command kube is a multi-call binary holding the Kubernetes node and control-plane
// components plus etcd. It dispatches on the basename it was started as (kube-apiserver,
// kubelet, etcd, ...) or, when started as "kube", on its first argument
// ("kube kubelet --config=..."). One component runs per process.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	_ "time/tzdata" // CronJob time zones

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func cobraMain(newCommand func() *cobra.Command) func() int {
	return func() int { return cli.Run(newCommand()) }
}

var components = map[string]func() int{
	"kube-apiserver":          cobraMain(apiserver.NewAPIServerCommand),
	"kube-controller-manager": cobraMain(controllermanager.NewControllerManagerCommand),
	"kube-scheduler":          cobraMain(func() *cobra.Command { return scheduler.NewSchedulerCommand() }),
	"kube-proxy":              cobraMain(proxy.NewProxyCommand),
	"kubelet": cobraMain(func() *cobra.Command {
		return kubelet.NewKubeletCommand(context.Background())
	}),
	"etcd": func() int { etcdmain.Main(os.Args); return 0 },
}

func usage() int {
	names := make([]string, 0, len(components))
	for name := range components {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: kube COMPONENT [flags...]  (or run it as a symlink named COMPONENT)\ncomponents: %s\n",
		strings.Join(names, " "))
	return 2
}

func main() {
	name := filepath.Base(os.Args[0])
	run, ok := components[name]
	if !ok {
		if len(os.Args) < 2 {
			os.Exit(usage())
		}
		if run, ok = components[os.Args[1]]; !ok {
			fmt.Fprintf(os.Stderr, "kube: unknown component %q\n", os.Args[1])
			os.Exit(usage())
		}
		// Components read os.Args[1:] as their flags: drop the dispatch word.
		os.Args = os.Args[1:]
	}
	os.Exit(run())
}
