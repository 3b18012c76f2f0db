// cni-driver: a minimal container runtime for aws-eni-ip's end-to-end tests and demo.
//
// It drives a conflist through Debian's libcni (1.1.2) exactly as a runtime (containerd, CRI-O,
// Multus) does: AddNetworkList / CheckNetworkList / DelNetworkList with a result cache, so DEL
// and CHECK get the cached result as prevResult. Build it in GOPATH mode, with no downloads:
//
//	CGO_ENABLED=0 GOPATH=/usr/share/gocode GO111MODULE=off go build -o tests/runtime/bin/cni-driver ./tests/runtime/driver
//
// Usage:
//
//	cni-driver add|check|del --conflist FILE --container ID --netns PATH [--ifname net1]
//	           [--cache-dir DIR] [--cni-path DIR:DIR] [--args K=V;K=V]
//	cni-driver gc     --conflist FILE [--valid ID/IFNAME,...] [--cache-dir DIR] [--cni-path ...]
//	cni-driver status --conflist FILE [--cni-path ...]
//	cnitool add|check|del|gc|status NAME NETNS    (invoked through a symlink named cnitool; see cnitool.go)
//
// stdout: ADD prints the final result JSON; every failure prints one JSON object
// {"code":N,"msg":"...","details":"...","error":"<libcni's error text>"} (code 0 when libcni
// itself refused, e.g. CHECK on a 0.3.1 list). Exit 0 on success, 1 on a CNI failure, 2 on usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// specWithGCAndStatus is the first CNI spec version that has GC and STATUS.
const specWithGCAndStatus = "1.1.0"

type options struct {
	conflist  string
	container string
	netns     string
	ifname    string
	cacheDir  string
	cniPath   string
	args      string
	capArgs   string
	valid     string
	timeout   time.Duration
}

var fs = flag.NewFlagSet("cni-driver", flag.ContinueOnError)

func usage() {
	fmt.Fprintf(os.Stderr, `usage: cni-driver add|check|del|gc|status --conflist FILE [flags]
  add|check|del need --container ID --netns PATH (del may omit --netns)
  gc takes --valid ID/IFNAME,... (the attachments still in use)
flags:
`)
	fs.PrintDefaults()
}

func main() {
	if isCnitool() {
		cnitoolMain()
		return
	}
	var o options
	fs.StringVar(&o.conflist, "conflist", "", "network configuration list (JSON)")
	fs.StringVar(&o.container, "container", "", "container id (CNI_CONTAINERID)")
	fs.StringVar(&o.netns, "netns", "", "network namespace path (CNI_NETNS)")
	fs.StringVar(&o.ifname, "ifname", "net1", "interface name in the container (CNI_IFNAME)")
	fs.StringVar(&o.cacheDir, "cache-dir", "/var/lib/cni", "libcni result cache directory")
	fs.StringVar(&o.cniPath, "cni-path", envOr("CNI_PATH", "/opt/cni/bin"), "plugin search path, ':'-separated")
	fs.StringVar(&o.args, "args", "", "CNI_ARGS, K=V;K=V")
	fs.StringVar(&o.capArgs, "capability-args", envOr("CAP_ARGS", ""), "capability args as JSON, e.g. {\"ips\":[\"198.18.1.5/24\"]} (cnitool's CAP_ARGS)")
	fs.StringVar(&o.valid, "valid", "", "gc: attachments still in use, ID/IFNAME,...")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "deadline for the whole command")
	fs.Usage = usage
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		usage()
		os.Exit(2)
	}
	cmd := os.Args[1]
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	if o.conflist == "" {
		fmt.Fprintln(os.Stderr, "cni-driver: --conflist is required")
		os.Exit(2)
	}
	// The plugin must find its credentials the realistic way (IMDS instance profile), not from a
	// developer's shell: plugins inherit the runtime's environment. What a node sets on purpose
	// (the EC2 endpoint, the plugin's node dir) passes.
	for _, kv := range os.Environ() {
		k := strings.SplitN(kv, "=", 2)[0]
		if strings.HasPrefix(k, "AWS_") && k != "AWS_ENDPOINT_URL_EC2" && k != "AWS_ENI_IP_NODE_DIR" {
			os.Unsetenv(k)
		}
	}

	list, err := libcni.ConfListFromFile(o.conflist)
	if err != nil {
		fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(o.cniPath), o.cacheDir, nil)

	switch cmd {
	case "add", "check", "del":
		if o.container == "" || (cmd != "del" && o.netns == "") {
			fmt.Fprintf(os.Stderr, "cni-driver: %s needs --container and --netns\n", cmd)
			os.Exit(2)
		}
		rt := &libcni.RuntimeConf{
			ContainerID: o.container,
			NetNS:       o.netns,
			IfName:      o.ifname,
			Args:        parseArgs(o.args),
		}
		if o.capArgs != "" {
			if err := json.Unmarshal([]byte(o.capArgs), &rt.CapabilityArgs); err != nil {
				fmt.Fprintf(os.Stderr, "cni-driver: --capability-args is not a JSON object: %v\n", err)
				os.Exit(2)
			}
		}
		switch cmd {
		case "add":
			result, err := cni.AddNetworkList(ctx, list, rt)
			if err != nil {
				fail(err)
			}
			out, err := json.Marshal(result)
			if err != nil {
				fail(err)
			}
			fmt.Println(string(out))
		case "check":
			if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
				fail(err)
			}
		case "del":
			if err := cni.DelNetworkList(ctx, list, rt); err != nil {
				fail(err)
			}
		}
	case "gc":
		valid, err := parseValid(o.valid)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cni-driver: --valid: %v\n", err)
			os.Exit(2)
		}
		if err := gc(ctx, cni, list, o.cacheDir, valid); err != nil {
			fail(err)
		}
	case "status":
		if err := status(ctx, cni, list); err != nil {
			fail(err)
		}
	default:
		usage()
		os.Exit(2)
	}
}

// gcAttachment is one entry of "cni.dev/valid-attachments".
type gcAttachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// cachedAttachment is the part of libcni 1.1.2's result cache file that GC needs.
type cachedAttachment struct {
	Kind           string                 `json:"kind"`
	ContainerID    string                 `json:"containerId"`
	IfName         string                 `json:"ifName"`
	NetworkName    string                 `json:"networkName"`
	CniArgs        [][2]string            `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]interface{} `json:"capabilityArgs,omitempty"`
}

// gc does by hand what libcni >= 1.2's GCNetworkList does, since libcni 1.1.2 has no GC:
//  1. DEL every cached attachment of this network that is not in valid;
//  2. send GC to the list's plugins with "cni.dev/valid-attachments" (and the spec v1.1.0 tag's
//     misnamed "cni.dev/attachments") injected beside name/cniVersion, through pkg/invoke.
//
// One difference: libcni >= 1.2 sends GC only when the list's cniVersion is >= 1.1.0, to every
// plugin. Debian's plugins (1.1.1) speak at most 1.0.0, so such a list could not even ADD here;
// instead the GC goes, with cniVersion max(list, 1.1.0), to each plugin whose VERSION reply
// declares that version, and the others are skipped (they have no GC to run).
func gc(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, cacheDir string, valid []gcAttachment) error {
	var errs []string
	isValid := map[gcAttachment]bool{}
	for _, v := range valid {
		isValid[v] = true
	}
	files, _ := filepath.Glob(filepath.Join(cacheDir, "results", "*"))
	for _, f := range files {
		raw, err := ioutil.ReadFile(f)
		if err != nil {
			continue
		}
		var c cachedAttachment
		if json.Unmarshal(raw, &c) != nil || c.Kind != libcni.CNICacheV1 || c.NetworkName != list.Name {
			continue
		}
		if isValid[gcAttachment{c.ContainerID, c.IfName}] {
			continue
		}
		// libcni 1.1.2's cache does not keep the netns; DEL without one is what runtimes send then.
		rt := &libcni.RuntimeConf{ContainerID: c.ContainerID, IfName: c.IfName, Args: c.CniArgs, CapabilityArgs: c.CapabilityArgs}
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			errs = append(errs, fmt.Sprintf("failed to delete stale attachment %s %s: %v", c.ContainerID, c.IfName, err))
		}
	}
	if valid == nil {
		valid = []gcAttachment{}
	}
	inject := map[string]interface{}{
		"cni.dev/valid-attachments": valid,
		"cni.dev/attachments":       valid,
	}
	var firstCoded error
	err := forEachPluginWith(ctx, cni, list, "GC", inject, func(err error) {
		errs = append(errs, err.Error())
		if firstCoded == nil {
			firstCoded = err
		}
	})
	if err != nil {
		return err
	}
	if len(errs) == 0 {
		return nil
	}
	joined := strings.Join(errs, "; ")
	var cniErr *types.Error
	if errors.As(firstCoded, &cniErr) {
		return fmt.Errorf("%s: %w", joined, cniErr)
	}
	return errors.New(joined)
}

// status does what libcni >= 1.2's GetStatusNetworkList does (stop at the first plugin that is not
// ready), with the same version rule as gc.
func status(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
	var first error
	err := forEachPluginWith(ctx, cni, list, "STATUS", nil, func(err error) {
		if first == nil {
			first = err
		}
	})
	if err != nil {
		return err
	}
	return first
}

// forEachPluginWith runs command on each plugin of list that declares the GC/STATUS spec version,
// with the config built like libcni builds it (name and cniVersion injected, plus extra).
func forEachPluginWith(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, command string, extra map[string]interface{}, onErr func(error)) error {
	want := list.CNIVersion
	if ok, err := version.GreaterThanOrEqualTo(want, specWithGCAndStatus); err != nil || !ok {
		want = specWithGCAndStatus
	}
	paths := filepath.SplitList(strings.Join(cni.Path, string(os.PathListSeparator)))
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
	for _, plugin := range list.Plugins {
		path, err := invoke.FindInPath(plugin.Network.Type, paths)
		if err != nil {
			return err
		}
		info, err := invoke.GetVersionInfo(ctx, path, exec)
		if err != nil {
			return fmt.Errorf("plugin %s: VERSION: %w", plugin.Network.Type, err)
		}
		if !contains(info.SupportedVersions(), want) {
			fmt.Fprintf(os.Stderr, "cni-driver: %s skipped for plugin %s (it does not speak CNI %s)\n", command, plugin.Network.Type, want)
			continue
		}
		inject := map[string]interface{}{"name": list.Name, "cniVersion": want}
		for k, v := range extra {
			inject[k] = v
		}
		conf, err := libcni.InjectConf(plugin, inject)
		if err != nil {
			return fmt.Errorf("failed to generate configuration to %s plugin %s: %w", command, plugin.Network.Type, err)
		}
		args := &invoke.Args{Command: command, Path: strings.Join(cni.Path, string(os.PathListSeparator))}
		if err := invoke.ExecPluginWithoutResult(ctx, path, conf.Bytes, args, exec); err != nil {
			onErr(fmt.Errorf("plugin type=%q failed (%s): %w", plugin.Network.Type, strings.ToLower(command), err))
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func parseArgs(s string) [][2]string {
	var out [][2]string
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		parts := strings.SplitN(kv, "=", 2)
		if len(parts) == 2 {
			out = append(out, [2]string{parts[0], parts[1]})
		}
	}
	return out
}

func parseValid(s string) ([]gcAttachment, error) {
	var out []gcAttachment
	for _, item := range strings.Split(s, ",") {
		if item == "" {
			continue
		}
		parts := strings.SplitN(item, "/", 2)
		if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("%q is not CONTAINERID/IFNAME", item)
		}
		out = append(out, gcAttachment{ContainerID: parts[0], IfName: parts[1]})
	}
	return out, nil
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

// fail prints the error as libcni returned it, with the plugin's CNI code when there is one.
func fail(err error) {
	out := struct {
		Code    uint   `json:"code"`
		Msg     string `json:"msg"`
		Details string `json:"details,omitempty"`
		Error   string `json:"error"`
	}{Msg: err.Error(), Error: err.Error()}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		out.Code, out.Msg, out.Details = cniErr.Code, cniErr.Msg, cniErr.Details
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
	os.Exit(1)
}
