package fedprom_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/fedprom"
	"github.com/devicemesh/federation/store/memstore"
)

// A host registers the node's collector with its own registry and serves
// it on /metrics.
func Example() {
	ctx := context.Background()
	node, err := federation.New(federation.Config{Store: memstore.New(), Device: federation.DeviceConfig{Name: "phone"}})
	if err != nil {
		panic(err)
	}
	defer func() { _ = node.Close() }()

	reg := prometheus.NewRegistry()
	reg.MustRegister(fedprom.New(node, fedprom.Options{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux) // a host: http.ListenAndServe("127.0.0.1:9100", mux)
	defer srv.Close()

	if err := node.Put(ctx, "notes", "groceries", []byte("milk, eggs")); err != nil {
		panic(err)
	}
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		panic(err)
	}
	defer func() { _ = res.Body.Close() }()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "federation_records ") || strings.HasPrefix(line, "federation_peers ") {
			fmt.Println(line)
		}
	}
	// Output:
	// federation_peers 0
	// federation_records 1
}
