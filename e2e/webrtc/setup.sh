#!/usr/bin/env bash
# Installs what e2e/webrtc's browser tests need, only what is missing, and
# quietly: Debian's Chromium, Kamailio's websocket and tls modules (the
# reference test's WebSocket server), the npm packages of package-lock.json
# (puppeteer-core, JsSIP, esbuild; no browser download) and JsSIP's browser
# bundle (npm run bundle: node_modules/.bundle/jssip.min.js). Idempotent;
# .ci/run calls it. Needs root for apt-get, node and npm.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G '/usr/lib/*/kamailio/modules/websocket.so' >/dev/null || missing+=(kamailio-websocket-modules)
compgen -G '/usr/lib/*/kamailio/modules/tls.so' >/dev/null || missing+=(kamailio-tls-modules)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# npm ci again when package-lock.json changed since the last install.
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ ! -d node_modules/puppeteer-core ]; then
	PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
if [ ! -s node_modules/.bundle/jssip.min.js ] || [ node_modules/jssip/package.json -nt node_modules/.bundle/jssip.min.js ]; then
	npm run -s bundle
fi
