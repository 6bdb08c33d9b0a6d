package kubernetes

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestContainerImage checks deploy/Containerfile without a container
// engine: its final stage is FROM scratch with the static binary, the CA
// certificates and the default configuration, runs as the non-root user
// the DaemonSet runs as, and viaduct --check accepts the default
// configuration with the flags its build stage checks it with.
func TestContainerImage(t *testing.T) {
	b, err := os.ReadFile("../Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	cf := string(b)
	final := cf[strings.LastIndex(cf, "\nFROM "):]
	for _, want := range []string{
		"\nFROM scratch\n",
		"\nCOPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n",
		"\nCOPY --from=build /out/viaduct /viaduct\n",
		"\nCOPY deploy/container.yaml /etc/viaduct/viaduct.yaml\n",
		"\nUSER 65532:65532\n",
		"\nENTRYPOINT [\"/viaduct\"]\n",
		"\nCMD [\"--config=/etc/viaduct/viaduct.yaml\"]\n",
	} {
		if !strings.Contains(final, want) {
			t.Errorf("the final stage has no %q", strings.TrimSpace(want))
		}
	}
	if strings.Count(final, "\nCOPY ") != 3 {
		t.Errorf("the final stage copies %d things, want the binary, the CA certificates and the config", strings.Count(final, "\nCOPY "))
	}
	if !strings.Contains(cf, "RUN CGO_ENABLED=0 go build") {
		t.Error("the binary is not built with CGO_ENABLED=0 (static)")
	}

	_, in := renderInstance(t, "hostnetwork")
	if uid := in.Pod.SecurityContext.RunAsUser; uid == nil || *uid != 65532 {
		t.Errorf("the DaemonSet runs as %v, the image as 65532", uid)
	}

	check := regexp.MustCompile(`/out/viaduct (--check --config deploy/container.yaml[^>]*)>`).FindStringSubmatch(cf)
	if check == nil {
		t.Fatal("the build stage does not run viaduct --check on deploy/container.yaml")
	}
	args := strings.Fields(strings.ReplaceAll(strings.ReplaceAll(check[1], "\\", " "), "deploy/container.yaml", "../container.yaml"))
	code, out, errOut := runCheck(t, buildViaduct(t), "", args[1:], func(s string) string { return s })
	if code != 0 || !strings.Contains(out, "listen=[udp:0.0.0.0:5060 tcp:0.0.0.0:5060]") {
		t.Errorf("viaduct %v: exit %d\n%s%s", args, code, out, errOut)
	}
}
