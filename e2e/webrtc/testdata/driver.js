// Driver of the browser end-to-end test (browser_test.go): starts Debian's
// Chromium headless through puppeteer-core (no browser download), opens
// the scenario page and prints one JSON object a line on stdout:
//
//	{"type":"console","level":"log","text":"E2E {...}"}  the page's console
//	{"type":"pageerror","text":"..."}                    an uncaught error
//	{"type":"ws","dir":"sent"|"recv","url":"...","data":"..."}  a WebSocket frame
//	{"type":"result","state":{...}}                      window.e2e at the end
//	{"type":"error","text":"..."}                        the driver failed
//
// Usage: node driver.js URL TIMEOUT_MS USER_DATA_DIR. Environment:
// CHROMIUM, the browser (default /usr/bin/chromium).
'use strict';

const puppeteer = require('puppeteer-core');

const [url, timeoutArg, userDataDir] = process.argv.slice(2);
const timeout = Number(timeoutArg) || 30000;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// The flags this machine's Chromium needs (no network beyond loopback, no
// GPU, root), the fake camera and microphone with their permission
// granted, and the test's self-signed certificate accepted.
const args = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--ignore-certificate-errors',
];

// frames prints the WebSocket frames the page sends and receives (the SIP
// messages, for a failing test's reader).
async function frames(page) {
  const cdp = await page.createCDPSession();
  const urls = new Map();
  cdp.on('Network.webSocketCreated', (e) => urls.set(e.requestId, e.url));
  cdp.on('Network.webSocketFrameSent', (e) => out({ type: 'ws', dir: 'sent', url: urls.get(e.requestId), data: e.response.payloadData }));
  cdp.on('Network.webSocketFrameReceived', (e) => out({ type: 'ws', dir: 'recv', url: urls.get(e.requestId), data: e.response.payloadData }));
  cdp.on('Network.webSocketFrameError', (e) => out({ type: 'ws', dir: 'error', url: urls.get(e.requestId), data: e.errorMessage }));
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => out({ type: 'ws', dir: 'handshake', url: urls.get(e.requestId), data: String(e.response.status) }));
  await cdp.send('Network.enable');
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    userDataDir: userDataDir,
    args: args,
    timeout: 15000,
    protocolTimeout: timeout,
  });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => out({ type: 'console', level: m.type(), text: m.text() }));
    page.on('pageerror', (e) => out({ type: 'pageerror', text: String(e && e.stack ? e.stack : e) }));
    await frames(page);
    await page.goto(url, { waitUntil: 'load', timeout: 10000 });
    try {
      await page.waitForFunction('window.e2e && window.e2e.done', { timeout: timeout, polling: 100 });
    } finally {
      out({ type: 'result', state: await page.evaluate(() => window.e2e || null) });
    }
  } finally {
    await browser.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    out({ type: 'error', text: String(err && err.stack ? err.stack : err) });
    process.exit(1);
  },
);
