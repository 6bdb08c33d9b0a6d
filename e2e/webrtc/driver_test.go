//go:build unix

package webrtc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// step is one step the page reports (app.js's report).
type step struct {
	Step           string `json:"step"`
	Ms             int    `json:"ms"`
	Reason         string `json:"reason"`
	From           string `json:"from"`
	Body           string `json:"body"`
	Status         int    `json:"status"`
	AnswerType     string `json:"answerType"`
	AnswerHasAudio bool   `json:"answerHasAudio"`
	Caller         string `json:"caller"`
	Callee         string `json:"callee"`
}

// driverLine is one JSON line of driver.js.
type driverLine struct {
	Type  string  `json:"type"`
	Level string  `json:"level"`
	Text  string  `json:"text"`
	Dir   string  `json:"dir"`
	URL   string  `json:"url"`
	Data  string  `json:"data"`
	State *result `json:"state"`
}

// result is window.e2e at the end: the steps, and why the page failed
// ("" when it did not).
type result struct {
	Events []step `json:"events"`
	Failed string `json:"failed"` // null in JSON: ""
}

// transcript is what one run of the driver produced.
type transcript struct {
	console []string // the page's console, "level: text"
	frames  []string // WebSocket frames, "dir url\ndata"
	result  *result  // window.e2e at the end, nil if never read
	stderr  string   // the driver's (and Chromium's) standard error
	err     error    // how the driver ended
}

// runDriver runs driver.js on pageURL with a hard limit (browserLimit plus
// a margin), calls onStep for every step the page reports as it comes, and
// returns the transcript. Past the limit node's process group gets
// SIGTERM, on which puppeteer kills Chromium (in a process group of its
// own), and SIGKILL 5 seconds later; at the end of the test any process
// left with the run's Chromium profile directory is killed.
func runDriver(t *testing.T, b browser, pageURL string, onStep func(step)) *transcript {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), browserLimit+15*time.Second)
	defer cancel()
	profile := t.TempDir()
	cmd := exec.CommandContext(ctx, b.node, "testdata/driver.js", pageURL,
		strconv.Itoa(int(browserLimit.Milliseconds())), profile)
	cmd.Dir = b.dir
	cmd.Env = append(cmd.Environ(), "CHROMIUM="+b.chromium)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node driver.js: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		killUsing(profile)
	})
	tr := &transcript{}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 1<<16), 8<<20)
	for sc.Scan() {
		tr.add(sc.Bytes(), onStep)
	}
	tr.err = cmd.Wait()
	if ctx.Err() != nil {
		tr.err = fmt.Errorf("stopped at its time limit: %w", tr.err)
	}
	tr.stderr = stderr.String()
	return tr
}

// add takes one line of the driver's output.
func (tr *transcript) add(line []byte, onStep func(step)) {
	var l driverLine
	if err := json.Unmarshal(line, &l); err != nil {
		tr.console = append(tr.console, "driver: "+string(line))
		return
	}
	switch l.Type {
	case "console", "pageerror", "error":
		tr.console = append(tr.console, l.Type+" "+l.Level+": "+l.Text)
		if text, ok := strings.CutPrefix(l.Text, "E2E "); ok && l.Type == "console" {
			var s step
			if json.Unmarshal([]byte(text), &s) == nil {
				onStep(s)
			}
		}
	case "ws":
		tr.frames = append(tr.frames, "--- "+l.Dir+" "+l.URL+"\n"+l.Data)
	case "result":
		tr.result = l.State
	}
}

// killUsing kills the processes whose command line names dir (Chromium's
// processes, by their --user-data-dir), read from /proc (nothing where
// there is none).
func killUsing(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
