// Command pulumi-language-python is an offline build of Pulumi's Python language host,
// for machines that can reach the Go module proxy but neither get.pulumi.com nor a proxy
// copy of github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3.
//
// It runs a Pulumi Python program the way the official host does: it resolves the
// project's virtualenv with the SDK's own python/toolchain package (pip toolchain),
// then runs `python -u pulumi-language-python-exec --monitor ... PROGRAM`, the shim
// shipped in the sdk/v3 module, with PULUMI_CONFIG and PULUMI_CONFIG_SECRET_KEYS set.
// The shim must sit next to this binary.
//
// It does not report the program's provider plugins (GetRequiredPackages answers an empty
// list): the engine loads each provider when the program first registers one of its
// resources, so a stack that never touches DigitalOcean never looks for that plugin.
// Typecheckers, poetry and uv, and program generation are not implemented.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	pbempty "google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
)

// version is set with -ldflags "-X main.version=v3.X.Y", the release of the CLI it ships with.
var version = "3.0.0"

// The shim exits with this code after it has shown the user an error: the engine then
// "bails" without adding a second, less useful message.
const exitAfterUserMessage = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
	execShim      string

	mu       sync.Mutex
	programs map[*exec.Cmd]struct{} // running Python programs, stopped on Cancel or a signal
}

// stopPrograms ends every running program: SIGTERM, then SIGKILL after a grace period.
// The engine cancels (and then interrupts this host) when a step fails or the user hits
// Ctrl-C; a program left waiting for outputs would otherwise hold it up.
func (h *host) stopPrograms(grace time.Duration) {
	h.mu.Lock()
	running := make([]*exec.Cmd, 0, len(h.programs))
	for cmd := range h.programs {
		running = append(running, cmd)
	}
	h.mu.Unlock()
	for _, cmd := range running {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for _, cmd := range running {
		for time.Now().Before(deadline) && cmd.Process.Signal(syscall.Signal(0)) == nil {
			time.Sleep(20 * time.Millisecond)
		}
		_ = cmd.Process.Kill()
	}
}

func (h *host) Cancel(context.Context, *pbempty.Empty) (*pbempty.Empty, error) {
	h.stopPrograms(time.Second)
	return &pbempty.Empty{}, nil
}

func main() {
	// The engine passes only its address; the official host also accepts these flags.
	flag.String("tracing", "", "Emit tracing to a Zipkin-compatible tracing endpoint")
	flag.String("virtualenv", "", "[obsolete] Virtual environment path (use Pulumi.yaml runtime options)")
	flag.String("root", "", "[obsolete] Project root path")
	flag.Parse()
	engine := ""
	if flag.NArg() > 0 {
		engine = flag.Arg(0)
	}

	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	self, _ = filepath.EvalSymlinks(self)
	shim := filepath.Join(filepath.Dir(self), "pulumi-language-python-exec")
	if _, err := os.Stat(shim); err != nil {
		fail(fmt.Errorf("%s is missing: install it next to the language host (scripts/setup-pulumi.sh does)", shim))
	}

	h := &host{engineAddress: engine, execShim: shim, programs: map[*exec.Cmd]struct{}{}}
	// The engine shuts plugins down with SIGINT (to the process group); exit at once,
	// with the programs we started, instead of making it wait for its kill timeout.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		h.stopPrograms(time.Second)
		os.Exit(0)
	}()

	cancel := make(chan bool)
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancel,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
		Options: rpcutil.OpenTracingServerInterceptorOptions(nil),
	})
	if err != nil {
		fail(err)
	}
	// The plugin protocol: the first line on stdout is the port we listen on.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
	os.Exit(1)
}

func (h *host) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.engineAddress = req.GetEngineAddress()
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *pbempty.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (h *host) GetRequiredPlugins(
	context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) GetRequiredPackages(
	context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

// pythonFor resolves the program's python: the `virtualenv` runtime option of Pulumi.yaml,
// relative to the project root, else the first python3/python on PATH.
func pythonFor(info *pulumirpc.ProgramInfo) (toolchain.Toolchain, error) {
	virtualenv := ""
	if opts := info.GetOptions(); opts != nil {
		if v, ok := opts.AsMap()["virtualenv"].(string); ok {
			virtualenv = v
		}
		if v, ok := opts.AsMap()["toolchain"].(string); ok && v != "" && v != "pip" {
			return nil, fmt.Errorf("runtime option toolchain=%s is not supported by this language host: use pip", v)
		}
	}
	return toolchain.ResolveToolchain(toolchain.PythonOptions{
		Root:       info.GetRootDirectory(),
		ProgramDir: info.GetProgramDirectory(),
		Virtualenv: virtualenv,
		Toolchain:  toolchain.Pip,
	})
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	tc, err := pythonFor(req.GetInfo())
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return &pulumirpc.RunResponse{Error: err.Error() +
			" (create the virtualenv named in Pulumi.yaml and pip install -r requirements.txt into it)"}, nil
	}

	args := []string{"-u", h.execShim,
		"--monitor", req.GetMonitorAddress(),
		"--engine", h.engineAddress,
		"--project", req.GetProject(),
		"--stack", req.GetStack(),
		"--pwd", req.GetPwd(),
		"--parallel", strconv.Itoa(int(req.GetParallel())),
		"--organization", req.GetOrganization(),
		"--root_directory", req.GetInfo().GetRootDirectory(),
	}
	if req.GetDryRun() {
		args = append(args, "--dry_run", "true")
	}
	program := req.GetProgram()
	if program == "" {
		program = req.GetInfo().GetEntryPoint()
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return nil, err
	}
	// The SDK wants a JSON object and a JSON list, also when empty (never `null`).
	configMap, secretList := req.GetConfig(), req.GetConfigSecretKeys()
	if configMap == nil {
		configMap = map[string]string{}
	}
	if secretList == nil {
		secretList = []string{}
	}
	config, err := json.Marshal(configMap)
	if err != nil {
		return nil, err
	}
	secretKeys, err := json.Marshal(secretList)
	if err != nil {
		return nil, err
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env,
		"PULUMI_CONFIG="+string(config),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeys),
		"PYTHONUNBUFFERED=1",
	)
	if req.GetLoaderTarget() != "" {
		cmd.Env = append(cmd.Env, "PULUMI_LOADER_TARGET="+req.GetLoaderTarget())
	}
	cmd.Dir = req.GetPwd()
	// The engine captures our stdout/stderr and shows them as the program's output.
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr

	if err := cmd.Start(); err != nil {
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Problem executing program (could not run language executor): %v", err)}, nil
	}
	h.mu.Lock()
	h.programs[cmd] = struct{}{}
	h.mu.Unlock()
	err = cmd.Wait()
	h.mu.Lock()
	delete(h.programs, cmd)
	h.mu.Unlock()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return &pulumirpc.RunResponse{}, nil
	case errors.As(err, &exit) && exit.ExitCode() == exitAfterUserMessage:
		return &pulumirpc.RunResponse{Bail: true}, nil
	case errors.As(err, &exit):
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exit.ExitCode())}, nil
	default:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Problem executing program (could not run language executor): %v", err)}, nil
	}
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	tc, err := pythonFor(req.GetInfo())
	if err != nil {
		return nil, err
	}
	info, err := tc.About(ctx)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{Executable: info.PythonExecutable, Version: info.PythonVersion.String()}, nil
}

func (h *host) GetProgramDependencies(
	ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	tc, err := pythonFor(req.GetInfo())
	if err != nil {
		return nil, err
	}
	deps, err := tc.ListPackages(ctx, req.GetTransitiveDependencies())
	if err != nil {
		return nil, err
	}
	out := make([]*pulumirpc.DependencyInfo, 0, len(deps))
	for _, d := range deps {
		out = append(out, &pulumirpc.DependencyInfo{Name: d.Name, Version: d.Version})
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: out}, nil
}

func (h *host) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest, server pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	tc, err := pythonFor(req.GetInfo())
	if err != nil {
		return err
	}
	out := &streamWriter{send: func(b []byte) error {
		return server.Send(&pulumirpc.InstallDependenciesResponse{Stdout: b})
	}}
	errw := &streamWriter{send: func(b []byte) error {
		return server.Send(&pulumirpc.InstallDependenciesResponse{Stderr: b})
	}}
	return tc.InstallDependencies(server.Context(), req.GetInfo().GetProgramDirectory(),
		req.GetUseLanguageVersionTools(), true, out, errw)
}

type streamWriter struct{ send func([]byte) error }

func (w *streamWriter) Write(p []byte) (int, error) {
	if err := w.send(append([]byte(nil), p...)); err != nil {
		return 0, err
	}
	return len(p), nil
}
