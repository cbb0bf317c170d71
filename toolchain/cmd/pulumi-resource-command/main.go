// Command pulumi-resource-command is an offline build of the pulumi-command provider's
// `command:local:Command` and `command:remote:Command` resources, for machines that can
// reach the Go module proxy but neither get.pulumi.com nor a proxy copy of
// github.com/pulumi/pulumi-command/provider.
//
// `command:local:Command` follows pulumi-command v1.2.1 where the local stack depends on it:
//   - create runs `create` (nothing during preview), update runs `update` or else
//     `create`, delete runs the `delete` stored in state;
//   - a change to `triggers` replaces the resource (create the new, then delete the old),
//     a change to any other input updates it;
//   - commands run with `/bin/sh -c` (or `interpreter`) in `dir` with `environment`
//     added, `stdin` on standard input, PULUMI_COMMAND_STDOUT/STDERR holding the previous
//     outputs; their output is logged as it comes and stored as `stdout`/`stderr`;
//   - a failed create still records the resource, so `pulumi destroy` runs its delete
//     (1.2.1 returns a plain error there, which the engine does not record).
//
// `command:remote:Command` is in remote.go, with what it covers and what not.
// `remote:CopyToRemote`, `remote:CopyFile` and the `local:run` function are not
// implemented: they fail with a message saying so.
package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"

	pbempty "google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil/rpcerror"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
)

// version is set with -ldflags "-X main.version=v1.2.1"; the engine matches it against
// the version the pulumi_command SDK asks for.
var version = "1.2.1"

const localCommand = "command:local:Command"

// Inputs that are not passed on as outputs unchanged: outputs only.
var outputOnly = map[resource.PropertyKey]bool{"stdout": true, "stderr": true, "assets": true, "archive": true}

type commandProvider struct {
	pulumirpc.UnimplementedResourceProviderServer
	host *provider.HostClient

	// cancel stops every running command when the engine cancels the operation.
	ctx    context.Context
	cancel context.CancelFunc
}

func main() {
	err := provider.Main("command", func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		ctx, cancel := context.WithCancel(context.Background())
		return &commandProvider{host: host, ctx: ctx, cancel: cancel}, nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

var marshal = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, SkipNulls: true}

func (p *commandProvider) GetPluginInfo(context.Context, *pbempty.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (p *commandProvider) Handshake(
	context.Context, *pulumirpc.ProviderHandshakeRequest,
) (*pulumirpc.ProviderHandshakeResponse, error) {
	return &pulumirpc.ProviderHandshakeResponse{AcceptSecrets: true}, nil
}

func (p *commandProvider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: `{"name":"command","version":"` + version + `"}`}, nil
}

func (p *commandProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *commandProvider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *commandProvider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true}, nil
}

func (p *commandProvider) Cancel(context.Context, *pbempty.Empty) (*pbempty.Empty, error) {
	p.cancel()
	return &pbempty.Empty{}, nil
}

func unsupported(what string) error {
	return rpcerror.New(codes.Unimplemented, what+" is not implemented by this offline build of the "+
		"command provider (only command:local:Command is): install the official pulumi-command plugin")
}

func (p *commandProvider) Invoke(_ context.Context, req *pulumirpc.InvokeRequest) (*pulumirpc.InvokeResponse, error) {
	return nil, unsupported(req.GetTok())
}

func checkType(urn string) error {
	if t := string(resource.URN(urn).Type()); t != localCommand && t != remoteCommand {
		return unsupported(t)
	}
	return nil
}

func isRemote(urn string) bool { return string(resource.URN(urn).Type()) == remoteCommand }

func (p *commandProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	news, err := plugin.UnmarshalProperties(req.GetNews(), marshal)
	if err != nil {
		return nil, err
	}
	if isRemote(req.GetUrn()) {
		checked, failures := checkRemote(news)
		inputs, err := plugin.MarshalProperties(checked, marshal)
		if err != nil {
			return nil, err
		}
		return &pulumirpc.CheckResponse{Inputs: inputs, Failures: failures}, nil
	}
	var failures []*pulumirpc.CheckFailure
	for _, key := range []resource.PropertyKey{"create", "update", "delete", "dir", "stdin"} {
		if v, ok := news[key]; ok && !v.IsNull() && !v.IsString() && !v.IsComputed() && !v.IsSecret() && !v.IsOutput() {
			failures = append(failures, &pulumirpc.CheckFailure{Property: string(key), Reason: string(key) + " must be a string"})
		}
	}
	return &pulumirpc.CheckResponse{Inputs: req.GetNews(), Failures: failures}, nil
}

// inputsOf drops the output-only keys of a state, leaving what the program declared.
func inputsOf(props resource.PropertyMap) resource.PropertyMap {
	in := resource.PropertyMap{}
	for k, v := range props {
		if !outputOnly[k] {
			in[k] = v
		}
	}
	return in
}

func (p *commandProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	olds, err := plugin.UnmarshalProperties(req.GetOldInputs(), marshal)
	if err != nil {
		return nil, err
	}
	if len(olds) == 0 { // states written before old inputs were recorded
		if olds, err = plugin.UnmarshalProperties(req.GetOlds(), marshal); err != nil {
			return nil, err
		}
	}
	news, err := plugin.UnmarshalProperties(req.GetNews(), marshal)
	if err != nil {
		return nil, err
	}
	diff := inputsOf(olds).Diff(inputsOf(news))
	if diff == nil || !diff.AnyChanges() {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
	}
	var changed, replaces []string
	for _, k := range diff.ChangedKeys() {
		changed = append(changed, string(k))
		if k == "triggers" {
			replaces = append(replaces, string(k))
		}
	}
	sort.Strings(changed)
	detailed := map[string]*pulumirpc.PropertyDiff{}
	for _, k := range changed {
		kind := pulumirpc.PropertyDiff_UPDATE
		if k == "triggers" {
			kind = pulumirpc.PropertyDiff_UPDATE_REPLACE
		}
		detailed[k] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	return &pulumirpc.DiffResponse{
		Changes:         pulumirpc.DiffResponse_DIFF_SOME,
		Diffs:           changed,
		Replaces:        replaces,
		DetailedDiff:    detailed,
		HasDetailedDiff: true,
	}, nil
}

// str reads a string input; secrets are unwrapped (the command needs the plain value).
func str(props resource.PropertyMap, key resource.PropertyKey) (string, bool) {
	v, ok := props[key]
	if !ok {
		return "", false
	}
	for v.IsSecret() {
		v = v.SecretValue().Element
	}
	if !v.IsString() {
		return "", false
	}
	return v.StringValue(), true
}

func plain(v resource.PropertyValue) resource.PropertyValue {
	for v.IsSecret() {
		v = v.SecretValue().Element
	}
	return v
}

// run executes one command the way pulumi-command does and stores stdout/stderr in out.
func (p *commandProvider) run(ctx context.Context, urn string, command string, in, out resource.PropertyMap) error {
	args := []string{"/bin/sh", "-c"}
	if v, ok := in["interpreter"]; ok && plain(v).IsArray() && len(plain(v).ArrayValue()) > 0 {
		args = nil
		for _, a := range plain(v).ArrayValue() {
			args = append(args, plain(a).StringValue())
		}
	}
	args = append(args, command)

	// The engine's cancellation and the RPC's own deadline both stop the command.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-p.ctx.Done():
			stop()
		case <-ctx.Done():
		}
	}()

	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	if dir, ok := str(in, "dir"); ok {
		cmd.Dir = dir
	}
	cmd.Env = os.Environ()
	if env, ok := in["environment"]; ok && plain(env).IsObject() {
		for k, v := range plain(env).ObjectValue() {
			cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%s", k, plain(v).StringValue()))
		}
	}
	addPrevious := true
	if v, ok := in["addPreviousOutputInEnv"]; ok && plain(v).IsBool() {
		addPrevious = plain(v).BoolValue()
	}
	if addPrevious {
		if s, ok := str(out, "stdout"); ok && s != "" {
			cmd.Env = append(cmd.Env, "PULUMI_COMMAND_STDOUT="+s)
		}
		if s, ok := str(out, "stderr"); ok && s != "" {
			cmd.Env = append(cmd.Env, "PULUMI_COMMAND_STDERR="+s)
		}
	}
	if s, ok := str(in, "stdin"); ok && s != "" {
		cmd.Stdin = strings.NewReader(s)
	}
	logging := "stdoutAndStderr"
	if s, ok := str(in, "logging"); ok && s != "" {
		logging = s
	}

	var stdout, stderr, both bytes.Buffer
	var mu sync.Mutex
	var wg sync.WaitGroup
	pipe := func(dst *bytes.Buffer, log bool) io.Writer {
		r, w := io.Pipe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
			for sc.Scan() {
				line := sc.Text()
				mu.Lock()
				dst.WriteString(line + "\n")
				both.WriteString(line + "\n")
				mu.Unlock()
				if log && p.host != nil {
					_ = p.host.Log(context.Background(), diag.Info, resource.URN(urn), line)
				}
			}
			_, _ = io.Copy(io.Discard, r)
		}()
		return w
	}
	wOut := pipe(&stdout, logging == "stdout" || logging == "stdoutAndStderr")
	wErr := pipe(&stderr, logging == "stderr" || logging == "stdoutAndStderr")
	cmd.Stdout, cmd.Stderr = wOut, wErr
	err := cmd.Run()
	wOut.(*io.PipeWriter).Close()
	wErr.(*io.PipeWriter).Close()
	wg.Wait()

	out["stdout"] = resource.NewStringProperty(strings.TrimSuffix(stdout.String(), "\n"))
	out["stderr"] = resource.NewStringProperty(strings.TrimSuffix(stderr.String(), "\n"))
	if err != nil {
		return fmt.Errorf("%w: running %q:\n%s", err, command, both.String())
	}
	return nil
}

// state is what the engine stores: the inputs plus stdout and stderr.
func state(in resource.PropertyMap, preview bool) resource.PropertyMap {
	out := in.Copy()
	if preview {
		out["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
		out["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
	} else {
		out["stdout"] = resource.NewStringProperty("")
		out["stderr"] = resource.NewStringProperty("")
	}
	return out
}

// initFailed records a resource whose command failed, so the engine keeps it in state
// (and a later destroy runs its delete command) while reporting the error.
func initFailed(id string, props resource.PropertyMap, err error) error {
	st, merr := plugin.MarshalProperties(props, marshal)
	if merr != nil {
		return merr
	}
	return rpcerror.WithDetails(
		rpcerror.New(codes.Unknown, err.Error()),
		&pulumirpc.ErrorResourceInitFailed{Id: id, Properties: st, Reasons: []string{err.Error()}})
}

func (p *commandProvider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	in, err := plugin.UnmarshalProperties(req.GetProperties(), marshal)
	if err != nil {
		return nil, err
	}
	id, err := resource.NewUniqueHex(string(resource.URN(req.GetUrn()).Name()), 8, 0)
	if err != nil {
		return nil, err
	}
	out := state(in, req.GetPreview())
	if create, ok := str(in, "create"); ok && !req.GetPreview() {
		if isRemote(req.GetUrn()) {
			// As in 1.2.1: a failed remote create is an error, not a partial resource.
			if err := p.runRemote(ctx, req.GetUrn(), "create", in, out); err != nil {
				return nil, err
			}
		} else if err := p.run(ctx, req.GetUrn(), create, in, out); err != nil {
			return nil, initFailed(id, out, err)
		}
	}
	props, err := plugin.MarshalProperties(out, marshal)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func (p *commandProvider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	// Nothing to look up: the state is the truth, as in pulumi-command.
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

func (p *commandProvider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	olds, err := plugin.UnmarshalProperties(req.GetOlds(), marshal)
	if err != nil {
		return nil, err
	}
	news, err := plugin.UnmarshalProperties(req.GetNews(), marshal)
	if err != nil {
		return nil, err
	}
	out := news.Copy()
	out["stdout"], out["stderr"] = olds["stdout"], olds["stderr"]
	if !req.GetPreview() {
		key := resource.PropertyKey("update")
		command, ok := str(news, key)
		if !ok {
			key = "create"
			command, ok = str(news, key)
		}
		switch {
		case !ok:
		case isRemote(req.GetUrn()):
			// As in 1.2.1: a failed remote update is an error; the engine keeps the old state.
			if err := p.runRemote(ctx, req.GetUrn(), key, news, out); err != nil {
				return nil, err
			}
		default:
			if err := p.run(ctx, req.GetUrn(), command, news, out); err != nil {
				return nil, initFailed(req.GetId(), out, err)
			}
		}
	} else if isRemote(req.GetUrn()) {
		// Some input changed, so the outputs are not known until the command has run.
		out["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
		out["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
	}
	props, err := plugin.MarshalProperties(out, marshal)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

func (p *commandProvider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*pbempty.Empty, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	olds, err := plugin.UnmarshalProperties(req.GetProperties(), marshal)
	if err != nil {
		return nil, err
	}
	if command, ok := str(olds, "delete"); ok {
		if isRemote(req.GetUrn()) {
			err = p.runRemote(ctx, req.GetUrn(), "delete", olds, olds.Copy())
		} else {
			err = p.run(ctx, req.GetUrn(), command, olds, olds.Copy())
		}
		if err != nil {
			return nil, err
		}
	}
	return &pbempty.Empty{}, nil
}
