// Command seedscale measures Gatehouse at scale for scripts/scale.sh. "seedscale seed" fills a
// fresh management database with one service of N WebSocket APIs and M subscriptions and prints
// a gateway token; "seedscale propagate" suspends subscriptions through the ARM API and times
// how long a gateway takes to refuse their keys.
//
// Usage:
//
//	seedscale seed [-apis N] [-subscriptions M] [-products P] ...
//	seedscale propagate -gateway-url URL [-n 20] ...
//
// Run either with -h for its flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "seedscale:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: seedscale seed|propagate [flags]")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	switch args[0] {
	case "seed":
		cfg, err := parseSeedConfig(args[1:])
		if err != nil {
			return err
		}
		token, err := seed(ctx, cfg, log)
		if err != nil {
			return err
		}
		fmt.Println(token)
		return nil
	case "propagate":
		cfg, err := parsePropagateConfig(args[1:])
		if err != nil {
			return err
		}
		res, err := propagate(ctx, cfg, log)
		if err != nil {
			return err
		}
		fmt.Println(res)
		return nil
	}
	return fmt.Errorf("unknown command %q: want seed or propagate", args[0])
}

// env returns the environment variable name, or def when it is unset.
func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// shape names what both commands must agree on: the service and how seeded resources are named.
type shape struct {
	subscription, resourceGroup, service string
	gateway                              string
	apis, subscriptions, products        int
}

func (s *shape) flags(fs *flag.FlagSet) {
	fs.StringVar(&s.subscription, "tenant", "scale", "ARM subscription id of the service")
	fs.StringVar(&s.resourceGroup, "resource-group", "scale", "resource group of the service")
	fs.StringVar(&s.service, "service", "scale", "service name")
	fs.StringVar(&s.gateway, "gateway", "edge", "gateway resource linked to every API")
	fs.IntVar(&s.apis, "apis", 10_000, "WebSocket APIs")
	fs.IntVar(&s.subscriptions, "subscriptions", 1_000_000, "subscriptions")
	fs.IntVar(&s.products, "products", 5, "products; API i belongs to product i mod products")
}

func (s *shape) check() error {
	if s.apis < 1 || s.subscriptions < 10 || s.products < 1 {
		return errors.New("need at least 1 API, 10 subscriptions and 1 product")
	}
	return nil
}

func apiName(i int) string     { return fmt.Sprintf("api-%05d", i) }
func apiPath(i int) string     { return "scale/" + apiName(i) }
func productName(i int) string { return fmt.Sprintf("product-%d", i) }
func subName(i int) string     { return fmt.Sprintf("sub-%07d", i) }

// scope is subscription i's scope below the service: one in ten covers all APIs, three in ten
// a product, the others the single API i mod apis.
func (s *shape) scope(i int) string {
	switch i % 10 {
	case 0:
		return "apis"
	case 1, 2, 3:
		return "products/" + productName(i%s.products)
	}
	return "apis/" + apiName(i%s.apis)
}

// armPath is the ARM path of the service.
func (s *shape) armPath() string {
	return "/subscriptions/" + s.subscription + "/resourceGroups/" + s.resourceGroup +
		"/providers/Microsoft.ApiManagement/service/" + s.service
}
