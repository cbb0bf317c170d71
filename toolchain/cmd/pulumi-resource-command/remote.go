// command:remote:Command, as pulumi-command v1.2.1 runs it, over golang.org/x/crypto/ssh.
//
// Covered, with 1.2.1's behaviour:
//   - connection: host, port (22), user (root), privateKey, privateKeyPassword, password
//     (with keyboard-interactive answering every question with it), agentSocketPath
//     (else $SSH_AUTH_SOCK of the provider process), hostKey, dialErrorLimit (10; -1:
//     no limit), perDialTimeout (15 s; 0: none). Check writes the defaults into the
//     inputs, so they are in the state as with the official provider, and marks the
//     whole connection secret.
//   - authentication methods in 1.2.1's order: the private key, the password, the agent.
//     Go's SSH client tries each method name once, so with a privateKey the agent's keys
//     are never offered; a passphrase-protected privateKey without privateKeyPassword
//     fails before dialing (no fall-back to the agent).
//   - host keys: with hostKey (a line in authorized_keys format) the server must present
//     exactly that key; without it the host key is not checked at all (1.2.1 does the same).
//   - dialing: a failed dial (TCP connect or SSH handshake, authentication included) is
//     retried until dialErrorLimit failures have been allowed, so a limit of N means N+1
//     attempts, waiting 100 ms, then 1.5 times longer each time, at most 5 s (Pulumi's
//     retry.Until, which 1.2.1 uses): the default 10 gives up after 11 attempts, ~11 s.
//     Bad connection settings (an unparsable key, an agent socket nobody listens on) are
//     not retried.
//   - create, update (else create), delete from the state; triggers replace (the engine
//     does it: the SDK declares replaceOnChanges triggers[*]); nothing runs in preview.
//   - environment through session.Setenv: a variable the server refuses (sshd accepts
//     only the names its AcceptEnv lists) fails the command, as in 1.2.1, which has no
//     fall-back; PULUMI_COMMAND_STDOUT/STDERR (addPreviousOutputInEnv, default true) are
//     set when possible, with a warning when refused.
//   - stdin on the session's standard input, then end of file; logging (stdoutAndStderr,
//     stdout, stderr, none) as status lines; stdout and stderr stored without their last
//     newline. A failed command's outputs stay those of the previous run.
//   - a failed create is not recorded in the state, and a failed update keeps the old
//     state (1.2.1 returns a plain error in both cases, not a partial resource); delete
//     of a host that no longer answers fails after the dial limit, as in 1.2.1 (remove
//     the resource with `pulumi state delete`).
//   - secrets: the state keeps every input's secretness (the connection is always
//     secret). An output is not made secret because an input was: 1.2.1 does not do that
//     either; declare additionalSecretOutputs (and logging: none) for a stdout that
//     carries a secret. Neither stdin nor the connection is ever logged, and an error does
//     not quote a command that is a secret.
//
// Deliberate differences, each in the user's favour and invisible to a working program:
// perDialTimeout also bounds the SSH handshake (1.2.1 bounds only the TCP connect, so a
// server that accepts and never answers hangs it); an RSA hostKey is negotiated with
// rsa-sha2-512/256 (1.2.1 asks for ssh-rsa, which OpenSSH 8.8 and later refuse); errors
// name the endpoint and say what to do.
//
// Not implemented (Check fails with a message saying so): connection.proxy (a bastion
// host), command:remote:CopyToRemote and command:remote:CopyFile.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/retry"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

const remoteCommand = "command:remote:Command"

// connectionDefaults are pulumi-command 1.2.1's schema defaults.
var connectionDefaults = map[resource.PropertyKey]resource.PropertyValue{
	"user":           resource.NewStringProperty("root"),
	"port":           resource.NewNumberProperty(22),
	"dialErrorLimit": resource.NewNumberProperty(10),
	"perDialTimeout": resource.NewNumberProperty(15),
}

var connectionStrings = []resource.PropertyKey{
	"host", "user", "password", "privateKey", "privateKeyPassword", "agentSocketPath", "hostKey",
}

// connection is a parsed `connection` input.
type connection struct {
	host, user         string
	port               int
	password           *string
	privateKey         *string
	privateKeyPassword *string
	agentSocketPath    *string
	hostKey            *string
	dialErrorLimit     int           // failures allowed before giving up; -1: no limit
	perDialTimeout     time.Duration // per attempt; 0: none
}

func (c connection) endpoint() string { return net.JoinHostPort(c.host, strconv.Itoa(c.port)) }

// parseConnection reads a `connection` value (secrets unwrapped, defaults for what is
// missing). Errors name the property.
func parseConnection(v resource.PropertyValue) (connection, error) {
	v = plain(v)
	if v.IsNull() {
		return connection{}, errors.New("connection is required")
	}
	if !v.IsObject() {
		return connection{}, errors.New("connection must be an object")
	}
	props := v.ObjectValue()
	if p, ok := props["proxy"]; ok && !plain(p).IsNull() {
		return connection{}, errors.New("connection.proxy (a bastion host) is not implemented by this " +
			"offline build of the command provider: connect directly, or install the official pulumi-command plugin")
	}
	strs := map[resource.PropertyKey]*string{}
	for _, key := range connectionStrings {
		p, ok := props[key]
		if !ok || plain(p).IsNull() {
			continue
		}
		if !plain(p).IsString() {
			return connection{}, fmt.Errorf("connection.%s must be a string", key)
		}
		s := plain(p).StringValue()
		strs[key] = &s
	}
	number := func(key resource.PropertyKey) (int, error) {
		p, ok := props[key]
		if !ok || plain(p).IsNull() {
			p = connectionDefaults[key]
		}
		p = plain(p)
		if !p.IsNumber() || p.NumberValue() != math.Trunc(p.NumberValue()) {
			return 0, fmt.Errorf("connection.%s must be a whole number", key)
		}
		return int(p.NumberValue()), nil
	}
	c := connection{
		password: strs["password"], privateKey: strs["privateKey"], privateKeyPassword: strs["privateKeyPassword"],
		agentSocketPath: strs["agentSocketPath"], hostKey: strs["hostKey"],
	}
	if strs["host"] == nil || *strs["host"] == "" {
		return connection{}, errors.New("connection.host is required")
	}
	c.host = *strs["host"]
	c.user = connectionDefaults["user"].StringValue()
	if strs["user"] != nil {
		c.user = *strs["user"]
	}
	var err error
	if c.port, err = number("port"); err != nil {
		return connection{}, err
	}
	if c.port < 1 || c.port > 65535 {
		return connection{}, fmt.Errorf("connection.port %d is not a TCP port (1-65535)", c.port)
	}
	if c.dialErrorLimit, err = number("dialErrorLimit"); err != nil {
		return connection{}, err
	}
	if c.dialErrorLimit < -1 {
		c.dialErrorLimit = -1 // any negative limit: 1.2.1 never stops retrying either
	}
	timeoutS, err := number("perDialTimeout")
	if err != nil {
		return connection{}, err
	}
	if timeoutS < 0 {
		return connection{}, fmt.Errorf("connection.perDialTimeout %d: seconds, 0 for no limit", timeoutS)
	}
	c.perDialTimeout = time.Duration(timeoutS) * time.Second
	return c, nil
}

// withConnectionDefaults returns the connection input with 1.2.1's defaults filled in,
// as a secret. A connection that is not known yet (preview) is returned as it is.
func withConnectionDefaults(v resource.PropertyValue) resource.PropertyValue {
	if plain(v).IsComputed() || !plain(v).IsObject() {
		return v
	}
	props := plain(v).ObjectValue().Copy()
	for key, value := range connectionDefaults {
		if p, ok := props[key]; !ok || p.IsNull() {
			props[key] = value
		}
	}
	return resource.MakeSecret(resource.NewObjectProperty(props))
}

// checkRemote validates a remote command's inputs and returns them with the connection
// defaults; failures are per property, as the engine shows them.
func checkRemote(news resource.PropertyMap) (resource.PropertyMap, []*pulumirpc.CheckFailure) {
	var failures []*pulumirpc.CheckFailure
	fail := func(key, reason string) {
		failures = append(failures, &pulumirpc.CheckFailure{Property: key, Reason: reason})
	}
	known := func(v resource.PropertyValue) bool { return !v.ContainsUnknowns() }
	for _, key := range []resource.PropertyKey{"create", "update", "delete", "stdin"} {
		if v, ok := news[key]; ok && known(v) && !plain(v).IsNull() && !plain(v).IsString() {
			fail(string(key), string(key)+" must be a string")
		}
	}
	if v, ok := news["logging"]; ok && known(v) && !plain(v).IsNull() {
		switch s := plain(v); {
		case !s.IsString():
			fail("logging", "logging must be a string")
		case !validLogging[s.StringValue()]:
			fail("logging", fmt.Sprintf("logging %q: one of stdout, stderr, stdoutAndStderr, none", s.StringValue()))
		}
	}
	if v, ok := news["environment"]; ok && known(v) && !plain(v).IsNull() {
		if !plain(v).IsObject() {
			fail("environment", "environment must be a map of strings")
		} else {
			for name, value := range plain(v).ObjectValue() {
				if !plain(value).IsString() {
					fail("environment", fmt.Sprintf("environment.%s must be a string", name))
				}
			}
		}
	}
	if v, ok := news["addPreviousOutputInEnv"]; ok && known(v) && !plain(v).IsNull() && !plain(v).IsBool() {
		fail("addPreviousOutputInEnv", "addPreviousOutputInEnv must be a boolean")
	}
	if v, ok := news["triggers"]; ok && known(v) && !plain(v).IsNull() && !plain(v).IsArray() {
		fail("triggers", "triggers must be a list")
	}
	checked := news.Copy()
	conn, ok := news["connection"]
	switch {
	case !ok || plain(conn).IsNull():
		fail("connection", "connection is required")
	case known(conn):
		if _, err := parseConnection(conn); err != nil {
			fail("connection", err.Error())
		} else {
			checked["connection"] = withConnectionDefaults(conn)
		}
	default: // not known yet: checked again when it is
		checked["connection"] = withConnectionDefaults(conn)
	}
	return checked, failures
}

var validLogging = map[string]bool{"stdout": true, "stderr": true, "stdoutAndStderr": true, "none": true}

// hostKeyAlgorithms are the signature algorithms to ask a server for when its key must be
// `key`: for RSA the SHA-2 ones, which OpenSSH offers (it no longer signs with ssh-rsa).
func hostKeyAlgorithms(key ssh.PublicKey) []string {
	if key.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{key.Type()}
}

// clientConfig builds the SSH client settings; the returned function releases the
// connection to the agent once dialing is over.
func (c connection) clientConfig() (*ssh.ClientConfig, func(), error) {
	cfg := &ssh.ClientConfig{User: c.user, Timeout: c.perDialTimeout}
	if c.hostKey != nil {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(*c.hostKey))
		if err != nil {
			return nil, nil, fmt.Errorf("connection.hostKey is not a public key in authorized_keys format "+
				"(as in `ssh-keyscan HOST` or /etc/ssh/ssh_host_ed25519_key.pub): %w", err)
		}
		cfg.HostKeyCallback = ssh.FixedHostKey(key)
		cfg.HostKeyAlgorithms = hostKeyAlgorithms(key)
	} else {
		//nolint:gosec // no hostKey: pulumi-command 1.2.1 does not check the host either
		cfg.HostKeyCallback = ssh.InsecureIgnoreHostKey()
	}
	if c.privateKey != nil {
		var signer ssh.Signer
		var err error
		if c.privateKeyPassword != nil {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(*c.privateKey), []byte(*c.privateKeyPassword))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(*c.privateKey))
		}
		var missing *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &missing):
			return nil, nil, errors.New("connection.privateKey is passphrase protected: give its passphrase " +
				"in connection.privateKeyPassword (a secret), or leave privateKey out and load the key " +
				"into an SSH agent (connection.agentSocketPath, or SSH_AUTH_SOCK)")
		case err != nil && c.privateKeyPassword != nil:
			return nil, nil, fmt.Errorf("connection.privateKey could not be read with connection.privateKeyPassword "+
				"(is it the key's passphrase?): %w", err)
		case err != nil:
			return nil, nil, fmt.Errorf("connection.privateKey is not a private key (give the key file's "+
				"contents, not its path): %w", err)
		}
		cfg.Auth = append(cfg.Auth, ssh.PublicKeys(signer))
	}
	if c.password != nil {
		password := *c.password
		cfg.Auth = append(cfg.Auth, ssh.Password(password),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = password
				}
				return answers, nil
			}))
	}
	release := func() {}
	socket := os.Getenv("SSH_AUTH_SOCK")
	if c.agentSocketPath != nil {
		socket = *c.agentSocketPath
	}
	if socket != "" {
		conn, err := net.Dial("unix", socket)
		if err != nil {
			return nil, nil, fmt.Errorf("connecting to the SSH agent at %s (connection.agentSocketPath, "+
				"or SSH_AUTH_SOCK): %w", socket, err)
		}
		cfg.Auth = append(cfg.Auth, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
		release = func() { _ = conn.Close() }
	}
	return cfg, release, nil
}

// dialOnce opens one SSH connection. The per-dial timeout covers the TCP connect and the
// SSH handshake.
func dialOnce(ctx context.Context, endpoint string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	dialer := net.Dialer{Timeout: cfg.Timeout}
	conn, err := dialer.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout > 0 {
		_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	sshConn, chans, reqs, err := ssh.NewClientConn(conn, endpoint, cfg)
	if err != nil {
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(sshConn, chans, reqs), nil
}

// retryer waits between dial attempts; tests replace its clock.
var retryer = retry.Retryer{}

// gaveUp says whether a dial that has failed `failures` times must stop: after
// dialErrorLimit failures allowed, the next one is fatal (-1: never).
func gaveUp(failures, limit int) bool { return limit >= 0 && failures > limit }

// dialWithRetry calls dial until it succeeds, fails for the (limit+1)-th time, or ctx
// ends, waiting between attempts as 1.2.1 does (retry.Until's defaults). status is told
// of each retry. It returns the number of attempts made.
func dialWithRetry[T any](ctx context.Context, limit int, status func(string),
	dial func(context.Context) (T, error),
) (T, int, error) {
	var zero, result T
	var lastErr error
	attempts := 0
	ok, _, err := retryer.Until(ctx, retry.Acceptor{
		Accept: func(int, time.Duration) (bool, any, error) {
			attempts++
			result, lastErr = dial(ctx)
			if lastErr == nil {
				return true, nil, nil
			}
			if gaveUp(attempts, limit) {
				return false, nil, lastErr
			}
			if ctx.Err() != nil {
				return false, nil, ctx.Err()
			}
			max := "no limit"
			if limit >= 0 {
				max = strconv.Itoa(limit + 1)
			}
			status(fmt.Sprintf("dial %d/%s failed (%v): retrying", attempts, max, lastErr))
			return false, nil, nil
		},
	})
	switch {
	case ok:
		return result, attempts, nil
	case err != nil:
		return zero, attempts, err
	default: // the context ended while waiting
		return zero, attempts, ctx.Err()
	}
}

// dial connects to the host, retrying as 1.2.1 does.
func (c connection) dial(ctx context.Context, status func(string)) (*ssh.Client, error) {
	cfg, release, err := c.clientConfig()
	if err != nil {
		return nil, err
	}
	defer release()
	client, attempts, err := dialWithRetry(ctx, c.dialErrorLimit, status, func(ctx context.Context) (*ssh.Client, error) {
		return dialOnce(ctx, c.endpoint(), cfg)
	})
	if err != nil {
		tries := "1 attempt"
		if attempts != 1 {
			tries = strconv.Itoa(attempts) + " attempts"
		}
		return nil, fmt.Errorf("connecting to %s@%s: gave up after %s (connection.dialErrorLimit %d): %w",
			c.user, c.endpoint(), tries, c.dialErrorLimit, err)
	}
	return client, nil
}

// lineLogger sends complete lines to log, as they come.
type lineLogger struct {
	mu      sync.Mutex
	pending []byte
	log     func(string)
}

func (l *lineLogger) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, b...)
	for {
		i := bytes.IndexByte(l.pending, '\n')
		if i < 0 {
			return len(b), nil
		}
		l.log(string(l.pending[:i]))
		l.pending = l.pending[i+1:]
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) > 0 {
		l.log(string(l.pending))
		l.pending = nil
	}
}

// lockedBuffer is a buffer that stdout and stderr can write to at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

type multiWriter []interface{ Write([]byte) (int, error) }

func (m multiWriter) Write(p []byte) (int, error) {
	for _, w := range m {
		if _, err := w.Write(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// runRemote runs the command input `key` (create, update or delete) of a remote command
// over SSH, with the settings in `in`; on success it stores stdout and stderr in out.
func (p *commandProvider) runRemote(ctx context.Context, urn string, key resource.PropertyKey,
	in, out resource.PropertyMap,
) error {
	command, _ := str(in, key)
	conn, err := parseConnection(in["connection"])
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { // the engine's cancellation stops the command too
		select {
		case <-p.ctx.Done():
			stop()
		case <-ctx.Done():
		}
	}()
	logStatus := func(sev diag.Severity, msg string) {
		if p.host != nil {
			_ = p.host.LogStatus(context.Background(), sev, resource.URN(urn), msg)
		}
	}
	logDiag := func(sev diag.Severity, msg string) {
		if p.host != nil {
			_ = p.host.Log(context.Background(), sev, resource.URN(urn), msg)
		}
	}

	client, err := conn.dial(ctx, func(msg string) { logStatus(diag.Info, msg) })
	if err != nil {
		return err
	}
	defer client.Close()
	closeOnCancel := context.AfterFunc(ctx, func() { _ = client.Close() })
	defer closeOnCancel()
	session, err := client.NewSession()
	if err != nil {
		return fmt.Errorf("opening an SSH session on %s: %w", conn.endpoint(), err)
	}
	defer session.Close()

	if env, ok := in["environment"]; ok && plain(env).IsObject() {
		vars := plain(env).ObjectValue()
		names := make([]string, 0, len(vars))
		for name := range vars {
			names = append(names, string(name))
		}
		sort.Strings(names)
		for _, name := range names {
			if err := session.Setenv(name, plain(vars[resource.PropertyKey(name)]).StringValue()); err != nil {
				return fmt.Errorf("could not set environment variable %q on %s: %w. %s",
					name, conn.endpoint(), err, setenvAdvice(name))
			}
		}
	}
	addPrevious := true
	if v, ok := in["addPreviousOutputInEnv"]; ok && plain(v).IsBool() {
		addPrevious = plain(v).BoolValue()
	}
	if addPrevious {
		for _, name := range []string{"PULUMI_COMMAND_STDOUT", "PULUMI_COMMAND_STDERR"} {
			key := resource.PropertyKey(strings.ToLower(strings.TrimPrefix(name, "PULUMI_COMMAND_")))
			if s, ok := str(out, key); ok && s != "" {
				if err := session.Setenv(name, s); err != nil {
					logDiag(diag.Warning, "Unable to set "+name+". "+setenvAdvice(name))
				}
			}
		}
	}
	if s, ok := str(in, "stdin"); ok && s != "" {
		session.Stdin = strings.NewReader(s)
	}

	logging := "stdoutAndStderr"
	if s, ok := str(in, "logging"); ok && s != "" {
		logging = s
	}
	var stdout, stderr bytes.Buffer
	var both lockedBuffer
	logger := &lineLogger{log: func(line string) { logStatus(diag.Info, line) }}
	outWriters := multiWriter{&stdout, &both}
	if logging == "stdout" || logging == "stdoutAndStderr" {
		outWriters = append(outWriters, logger)
	}
	errWriters := multiWriter{&stderr, &both}
	if logging == "stderr" || logging == "stdoutAndStderr" {
		errWriters = append(errWriters, logger)
	}
	session.Stdout, session.Stderr = outWriters, errWriters

	err = session.Run(command)
	logger.flush()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("cancelled: %w", ctx.Err())
		}
		return fmt.Errorf("%w: running %s on %s:\n%s", err, describeCommand(in, key), conn.endpoint(),
			both.buf.String())
	}
	out["stdout"] = resource.NewStringProperty(strings.TrimSuffix(stdout.String(), "\n"))
	out["stderr"] = resource.NewStringProperty(strings.TrimSuffix(stderr.String(), "\n"))
	return nil
}

// describeCommand names command input `key` in an error: quoted, unless it is a secret.
func describeCommand(in resource.PropertyMap, key resource.PropertyKey) string {
	if in[key].ContainsSecrets() {
		return "the " + string(key) + " command (a secret)"
	}
	command, _ := str(in, key)
	return strconv.Quote(command)
}

func setenvAdvice(name string) string {
	return fmt.Sprintf("The SSH server sets only the variables its sshd_config AcceptEnv lists: add %s "+
		"there, or prefix the command with '%s=value'", name, name)
}
