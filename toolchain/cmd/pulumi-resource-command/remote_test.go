package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/retry"
	"golang.org/x/crypto/ssh"
)

func connectionValue(props map[string]any) resource.PropertyValue {
	return resource.MakeSecret(resource.NewObjectProperty(resource.NewPropertyMapFromMap(props)))
}

func TestParseConnectionAppliesTheDefaultsOf121(t *testing.T) {
	c, err := parseConnection(connectionValue(map[string]any{"host": "10.0.0.7"}))
	if err != nil {
		t.Fatal(err)
	}
	want := connection{host: "10.0.0.7", user: "root", port: 22, dialErrorLimit: 10, perDialTimeout: 15 * time.Second}
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	if c.endpoint() != "10.0.0.7:22" {
		t.Fatalf("endpoint %s", c.endpoint())
	}
}

func TestParseConnectionReadsEveryFieldAndNestedSecrets(t *testing.T) {
	props := resource.NewPropertyMapFromMap(map[string]any{
		"host": "::1", "user": "bench", "port": 2222, "dialErrorLimit": -1, "perDialTimeout": 0,
		"agentSocketPath": "/run/agent.sock", "hostKey": "ssh-ed25519 AAAA",
	})
	props["password"] = resource.MakeSecret(resource.NewStringProperty("pw"))
	c, err := parseConnection(resource.MakeSecret(resource.NewObjectProperty(props)))
	if err != nil {
		t.Fatal(err)
	}
	if c.endpoint() != "[::1]:2222" || c.user != "bench" || c.dialErrorLimit != -1 || c.perDialTimeout != 0 ||
		*c.password != "pw" || *c.agentSocketPath != "/run/agent.sock" || *c.hostKey != "ssh-ed25519 AAAA" ||
		c.privateKey != nil {
		t.Fatalf("got %+v", c)
	}
}

func TestParseConnectionRefusesWhatItCannotDo(t *testing.T) {
	for _, tc := range []struct {
		props map[string]any
		want  string
	}{
		{map[string]any{}, "connection.host is required"},
		{map[string]any{"host": "h", "port": 22.5}, "connection.port must be a whole number"},
		{map[string]any{"host": "h", "port": 70000}, "not a TCP port"},
		{map[string]any{"host": "h", "user": 7}, "connection.user must be a string"},
		{map[string]any{"host": "h", "perDialTimeout": -3}, "perDialTimeout -3"},
		{map[string]any{"host": "h", "proxy": map[string]any{"host": "bastion"}}, "connection.proxy"},
	} {
		_, err := parseConnection(connectionValue(tc.props))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got error %v, want one containing %q", tc.props, err, tc.want)
		}
	}
}

func TestCheckWritesTheDefaultsAndKeepsTheConnectionSecret(t *testing.T) {
	news := resource.NewPropertyMapFromMap(map[string]any{"create": "true", "logging": "none"})
	news["connection"] = resource.NewObjectProperty(resource.NewPropertyMapFromMap(map[string]any{"host": "h"}))
	checked, failures := checkRemote(news)
	if len(failures) != 0 {
		t.Fatalf("failures: %v", failures)
	}
	conn := checked["connection"]
	if !conn.IsSecret() {
		t.Fatal("the connection is not a secret after Check")
	}
	got := conn.SecretValue().Element.ObjectValue()
	for key, want := range map[resource.PropertyKey]any{"host": "h", "user": "root", "port": 22.0,
		"dialErrorLimit": 10.0, "perDialTimeout": 15.0} {
		if got[key].V != want {
			t.Errorf("connection.%s = %v, want %v", key, got[key].V, want)
		}
	}
	if news["connection"].IsSecret() {
		t.Fatal("Check changed its argument")
	}
}

func TestCheckReportsEachBadInput(t *testing.T) {
	news := resource.NewPropertyMapFromMap(map[string]any{
		"create": 3, "logging": "everything", "environment": map[string]any{"A": 1},
	})
	_, failures := checkRemote(news)
	got := map[string]string{}
	for _, f := range failures {
		got[f.Property] = f.Reason
	}
	for _, key := range []string{"create", "logging", "environment", "connection"} {
		if got[key] == "" {
			t.Errorf("no failure for %s (failures: %v)", key, got)
		}
	}
}

// fakeClock records the waits of the retry loop and returns at once.
func fakeClock(t *testing.T) *[]time.Duration {
	waits := &[]time.Duration{}
	saved := retryer
	retryer = retry.Retryer{After: func(d time.Duration) <-chan time.Time {
		*waits = append(*waits, d)
		ch := make(chan time.Time, 1)
		ch <- time.Now()
		return ch
	}}
	t.Cleanup(func() { retryer = saved })
	return waits
}

func TestADialErrorLimitOfNAllowsNFailuresSoNPlusOneAttempts(t *testing.T) {
	for _, limit := range []int{0, 2, 10} {
		waits := fakeClock(t)
		var statuses []string
		attempts := 0
		refused := errors.New("connection refused")
		_, made, err := dialWithRetry(context.Background(), limit, func(s string) { statuses = append(statuses, s) },
			func(context.Context) (int, error) { attempts++; return 0, refused })
		if !errors.Is(err, refused) || attempts != limit+1 || made != limit+1 {
			t.Fatalf("limit %d: %d attempts (reported %d), error %v", limit, attempts, made, err)
		}
		if len(statuses) != limit || len(*waits) != limit {
			t.Fatalf("limit %d: %d status lines, %d waits", limit, len(statuses), len(*waits))
		}
		if limit == 2 && statuses[1] != "dial 2/3 failed (connection refused): retrying" {
			t.Fatalf("status line: %q", statuses[1])
		}
	}
}

func TestDialWaitsAsPulumiCommandDoes(t *testing.T) {
	waits := fakeClock(t)
	attempts := 0
	got, made, err := dialWithRetry(context.Background(), -1, func(string) {},
		func(context.Context) (string, error) {
			if attempts++; attempts < 13 {
				return "", errors.New("not yet")
			}
			return "client", nil
		})
	if err != nil || got != "client" || made != 13 {
		t.Fatalf("got %q after %d attempts, error %v", got, made, err)
	}
	// 100 ms, then 1.5 times longer each time, at most 5 s: 11.3 s of waiting before the
	// 11th attempt, which is where the default limit of 10 gives up.
	want := 100 * time.Millisecond
	var total time.Duration
	for i, w := range *waits {
		if w != want {
			t.Fatalf("wait %d: %v, want %v (all: %v)", i, w, want, *waits)
		}
		if i < 10 {
			total += w
		}
		want = min(time.Duration(float64(want)*1.5), 5*time.Second)
	}
	if total < 11*time.Second || total > 12*time.Second {
		t.Fatalf("the default limit waits %v in all", total)
	}
}

func TestACancelledDialStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	attempts := 0
	_, _, err := dialWithRetry(ctx, -1, func(string) {}, func(context.Context) (int, error) {
		attempts++
		cancel()
		return 0, errors.New("refused")
	})
	if !errors.Is(err, context.Canceled) || attempts != 1 {
		t.Fatalf("%d attempts, error %v", attempts, err)
	}
}

func TestPerDialTimeoutBoundsAHandshakeThatNeverComes(t *testing.T) {
	// A server that accepts the TCP connection and never says a word.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	cfg := &ssh.ClientConfig{User: "root", Timeout: 300 * time.Millisecond,
		HostKeyCallback: ssh.InsecureIgnoreHostKey()} //nolint:gosec // test
	start := time.Now()
	_, err = dialOnce(context.Background(), listener.Addr().String(), cfg)
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("error %v after %v", err, time.Since(start))
	}
}

func TestAPassphraseProtectedKeyNeedsItsPassphrase(t *testing.T) {
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(private, "test", []byte("open sesame"))
	if err != nil {
		t.Fatal(err)
	}
	key := string(pem.EncodeToMemory(block))
	wrong, right := "sesame", "open sesame"
	t.Setenv("SSH_AUTH_SOCK", "")

	_, _, err = connection{user: "root", privateKey: &key}.clientConfig()
	if err == nil || !strings.Contains(err.Error(), "passphrase protected") ||
		!strings.Contains(err.Error(), "privateKeyPassword") {
		t.Fatalf("without a passphrase: %v", err)
	}
	_, _, err = connection{user: "root", privateKey: &key, privateKeyPassword: &wrong}.clientConfig()
	if err == nil || !strings.Contains(err.Error(), "could not be read with connection.privateKeyPassword") {
		t.Fatalf("with the wrong passphrase: %v", err)
	}
	cfg, release, err := connection{user: "root", privateKey: &key, privateKeyPassword: &right}.clientConfig()
	if err != nil {
		t.Fatal(err)
	}
	release()
	if len(cfg.Auth) != 1 {
		t.Fatalf("%d authentication methods, want the key's only", len(cfg.Auth))
	}
}

func TestAnAgentNobodyListensOnIsABadSettingNotARetry(t *testing.T) {
	socket, fromEnv := t.TempDir()+"/agent.sock", t.TempDir()+"/env-agent.sock"
	t.Setenv("SSH_AUTH_SOCK", fromEnv)
	_, _, err := connection{user: "root", agentSocketPath: &socket}.clientConfig()
	if err == nil || !strings.Contains(err.Error(), "SSH agent at "+socket) {
		t.Fatalf("agentSocketPath: error %v", err)
	}
	// Without agentSocketPath, the provider's SSH_AUTH_SOCK.
	_, _, err = connection{user: "root"}.clientConfig()
	if err == nil || !strings.Contains(err.Error(), "SSH agent at "+fromEnv) {
		t.Fatalf("SSH_AUTH_SOCK: error %v", err)
	}
}

func TestAnRSAHostKeyIsAskedForWithSHA2Signatures(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		key  any
		want string
	}{
		{rsaKey, ssh.KeyAlgoRSASHA512 + " " + ssh.KeyAlgoRSASHA256},
		{edKey, ssh.KeyAlgoED25519},
	} {
		signer, err := ssh.NewSignerFromKey(tc.key)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(hostKeyAlgorithms(signer.PublicKey()), " "); got != tc.want {
			t.Errorf("%s: %s, want %s", signer.PublicKey().Type(), got, tc.want)
		}
	}
}

func TestLineLoggerSendsWholeLines(t *testing.T) {
	var lines []string
	l := &lineLogger{log: func(s string) { lines = append(lines, s) }}
	_, _ = l.Write([]byte("one\ntw"))
	_, _ = l.Write([]byte("o\nthree"))
	l.flush()
	if strings.Join(lines, "|") != "one|two|three" {
		t.Fatalf("lines %q", lines)
	}
}

func TestAnErrorQuotesACommandUnlessItIsASecret(t *testing.T) {
	in := resource.PropertyMap{
		"create": resource.NewStringProperty("docker swarm leave"),
		"delete": resource.MakeSecret(resource.NewStringProperty("echo s3cr3t | docker login --password-stdin")),
	}
	if got := describeCommand(in, "create"); got != `"docker swarm leave"` {
		t.Errorf("create: %s", got)
	}
	if got := describeCommand(in, "delete"); strings.Contains(got, "s3cr3t") || !strings.Contains(got, "secret") {
		t.Errorf("delete: %s", got)
	}
}
