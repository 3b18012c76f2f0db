// cnitool mode: when invoked as `cnitool` (a symlink to cni-driver), it takes upstream cnitool's
// command line and environment, so the README's cnitool walkthrough runs here, where upstream
// cnitool cannot be fetched:
//
//	cnitool add|check|del|gc|status NAME NETNS
//
// NETCONFPATH (default /etc/cni/net.d) holds the conflist whose "name" is NAME; CNI_PATH is the
// plugin search path; CNI_ARGS, CAP_ARGS and CNI_IFNAME (default eth0) as upstream. The container
// id is upstream's: "cnitool-" and the first 10 bytes of sha512(absolute NETNS path), in hex. The
// result cache is libcni's default (/var/lib/cni). Unlike cni-driver mode, the environment passes
// to the plugins unchanged, as upstream cnitool does. ADD prints the result; errors go to stderr,
// exit 1.
package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func isCnitool() bool {
	return filepath.Base(os.Args[0]) == "cnitool"
}

func cnitoolUsage() {
	exe := filepath.Base(os.Args[0])
	fmt.Fprintf(os.Stderr, "%s: Add, check, remove, gc or status network interfaces from a network namespace\n", exe)
	for _, c := range []string{"add   ", "check ", "del   ", "gc    ", "status"} {
		fmt.Fprintf(os.Stderr, "  %s %s <net> <netns>\n", exe, c)
	}
	os.Exit(1)
}

func cnitoolExit(err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// cnitoolArgs parses CNI_ARGS the way upstream cnitool does: every pair must be K=V.
func cnitoolArgs(s string) ([][2]string, error) {
	var out [][2]string
	for _, pair := range strings.Split(s, ";") {
		kv := strings.Split(pair, "=")
		if len(kv) != 2 || kv[0] == "" || kv[1] == "" {
			return nil, fmt.Errorf("invalid CNI_ARGS pair %q", pair)
		}
		out = append(out, [2]string{kv[0], kv[1]})
	}
	return out, nil
}

func cnitoolMain() {
	if len(os.Args) < 4 {
		cnitoolUsage()
	}
	netdir := os.Getenv("NETCONFPATH")
	if netdir == "" {
		netdir = "/etc/cni/net.d"
	}
	list, err := libcni.LoadConfList(netdir, os.Args[2])
	cnitoolFailOn(err)
	var capArgs map[string]interface{}
	if v := os.Getenv("CAP_ARGS"); v != "" {
		cnitoolFailOn(json.Unmarshal([]byte(v), &capArgs))
	}
	var cniArgs [][2]string
	if v := os.Getenv("CNI_ARGS"); v != "" {
		cniArgs, err = cnitoolArgs(v)
		cnitoolFailOn(err)
	}
	ifname, ok := os.LookupEnv("CNI_IFNAME")
	if !ok {
		ifname = "eth0"
	}
	netns, err := filepath.Abs(os.Args[3])
	cnitoolFailOn(err)
	sum := sha512.Sum512([]byte(netns))
	rt := &libcni.RuntimeConf{
		ContainerID:    fmt.Sprintf("cnitool-%x", sum[:10]),
		NetNS:          netns,
		IfName:         ifname,
		Args:           cniArgs,
		CapabilityArgs: capArgs,
	}
	cni := libcni.NewCNIConfig(filepath.SplitList(os.Getenv("CNI_PATH")), nil)
	ctx := context.TODO()
	switch os.Args[1] {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if result != nil {
			_ = result.Print()
		}
		cnitoolExit(err)
	case "check":
		cnitoolExit(cni.CheckNetworkList(ctx, list, rt))
	case "del":
		cnitoolExit(cni.DelNetworkList(ctx, list, rt))
	case "gc":
		// Upstream passes no valid attachments: every cached attachment of the network goes.
		cnitoolExit(gc(ctx, cni, list, libcni.CacheDir, nil))
	case "status":
		cnitoolExit(status(ctx, cni, list))
	default:
		cnitoolUsage()
	}
}

func cnitoolFailOn(err error) {
	if err != nil {
		cnitoolExit(err)
	}
}
