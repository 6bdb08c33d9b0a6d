// The scenario of the browser end-to-end test (browser_test.go): two JsSIP
// user agents, alice and bob, on one page, both over SIP over WebSocket to
// the URL in the query string (?ws=wss://...&domain=...&token=...).
//
// Every step is reported twice: pushed to window.e2e.events and logged to
// the console as "E2E " + JSON, which the driver (driver.js) prints as JSON
// lines for the Go test. window.e2e.done turns true at the end, with
// window.e2e.failed holding the reason when a step failed. Every wait has
// a time limit.
(function () {
  'use strict';

  const q = new URLSearchParams(location.search);
  const wsURL = q.get('ws');
  const domain = q.get('domain');
  const token = q.get('token');
  const t0 = Date.now();
  const state = (window.e2e = { events: [], done: false, failed: null });

  function report(step, detail) {
    const ev = Object.assign({ step: step, ms: Date.now() - t0 }, detail || {});
    state.events.push(ev);
    console.log('E2E ' + JSON.stringify(ev));
  }

  // within resolves or rejects like the promise p, or rejects after ms.
  function within(ms, what, p) {
    let timer;
    const limit = new Promise(function (resolve, reject) {
      timer = setTimeout(function () {
        reject(new Error('timed out after ' + ms + ' ms waiting for ' + what));
      }, ms);
    });
    return Promise.race([p, limit]).finally(function () { clearTimeout(timer); });
  }

  // status is a failure's SIP status code, when a response caused it.
  function status(e) {
    const m = e && (e.response || e.message);
    return m && m.status_code ? m.status_code : undefined;
  }

  function newUA(user) {
    if (q.get('debug') === '1') {
      JsSIP.debug.enable('JsSIP:*');
    }
    return new JsSIP.UA({
      sockets: [new JsSIP.WebSocketInterface(wsURL)],
      uri: 'sip:' + user + '@' + domain,
      display_name: user,
      register: true,
      register_expires: 120,
      session_timers: false,
      user_agent: 'viaduct-e2e JsSIP/' + JsSIP.version,
      connection_recovery_min_interval: 1,
      connection_recovery_max_interval: 2,
    });
  }

  // registration resolves on the UA's next 'registered' or 'unregistered'
  // (want), and rejects on 'registrationFailed'.
  function registration(ua, want) {
    return new Promise(function (resolve, reject) {
      ua.once(want, resolve);
      ua.once('registrationFailed', function (e) {
        reject(new Error(want + ' failed: ' + e.cause + ' (status ' + status(e) + ')'));
      });
    });
  }

  // Mailbox keeps what a UA receives (messages, sessions) and hands it to
  // whoever waits for it.
  function Mailbox() {
    this.items = [];
    this.waiters = [];
  }
  Mailbox.prototype.put = function (item) {
    const i = this.waiters.findIndex(function (w) { return w.match(item); });
    if (i >= 0) {
      this.waiters.splice(i, 1)[0].resolve(item);
      return;
    }
    this.items.push(item);
  };
  Mailbox.prototype.take = function (match) {
    const i = this.items.findIndex(match);
    if (i >= 0) {
      return Promise.resolve(this.items.splice(i, 1)[0]);
    }
    const self = this;
    return new Promise(function (resolve) { self.waiters.push({ match: match, resolve: resolve }); });
  };

  // sessionOutcome resolves when session emits event ('confirmed',
  // 'ended') and rejects when it fails first. Listeners are attached at
  // once: call it as soon as the session exists.
  function sessionOutcome(session, event) {
    return new Promise(function (resolve, reject) {
      session.once(event, resolve);
      session.once('failed', function (e) {
        reject(new Error('session failed (' + e.originator + '): ' + e.cause + ' (status ' + status(e) + ')'));
      });
    });
  }

  // watch makes bob keep the messages he receives, and answer every call
  // with the fake microphone, keeping the session and its outcomes.
  function watch(ua, inbox, calls) {
    ua.on('newMessage', function (e) {
      if (e.originator === 'remote') {
        inbox.put({ from: e.request.from.uri.user, body: e.request.body });
      }
    });
    ua.on('newRTCSession', function (e) {
      if (e.originator !== 'remote') {
        return;
      }
      const s = e.session;
      const call = { from: e.request.from.uri.user, confirmed: sessionOutcome(s, 'confirmed'), ended: sessionOutcome(s, 'ended') };
      call.confirmed.catch(function () {});
      call.ended.catch(function () {});
      s.answer({ mediaConstraints: { audio: true, video: false }, pcConfig: { iceServers: [] } });
      calls.put(call);
    });
  }

  function sendMessage(from, to, body) {
    return new Promise(function (resolve, reject) {
      from.sendMessage('sip:' + to + '@' + domain, body, {
        eventHandlers: {
          succeeded: function (e) { resolve(e.response.status_code); },
          failed: function (e) { reject(new Error('MESSAGE failed: ' + e.cause + ' (status ' + status(e) + ')')); },
        },
      });
    });
  }

  // call: alice calls bob, bob answers, both see the call confirmed; alice
  // hangs up and both see it ended, bob by the BYE that reaches him.
  async function call(alice, calls) {
    const session = alice.call('sip:bob@' + domain, {
      mediaConstraints: { audio: true, video: false },
      pcConfig: { iceServers: [] },
    });
    const confirmed = sessionOutcome(session, 'confirmed');
    const ended = sessionOutcome(session, 'ended');
    ended.catch(function () {});
    try {
      await within(10000, 'alice\'s call confirmed', confirmed);
    } catch (err) {
      report('call-failed', { reason: String(err.message) });
      throw err;
    }
    const sdp = session.connection && session.connection.remoteDescription ? session.connection.remoteDescription.sdp : '';
    report('call-confirmed', { answerType: session.connection.remoteDescription.type, answerHasAudio: /^m=audio /m.test(sdp) });
    const incoming = await within(5000, 'bob\'s incoming call', calls.take(function () { return true; }));
    await within(5000, 'bob\'s call confirmed (ACK)', incoming.confirmed);
    report('call-answered', { from: incoming.from });
    session.terminate();
    const ends = await within(5000, 'both ends of the call ended', Promise.all([ended, incoming.ended]));
    report('call-ended', { caller: ends[0].originator + ' ' + ends[0].cause, callee: ends[1].originator + ' ' + ends[1].cause });
  }

  async function scenario() {
    const alice = newUA('alice');
    const bob = newUA('bob');
    const inbox = new Mailbox();
    const calls = new Mailbox();
    watch(bob, inbox, calls);
    const regs = [registration(alice, 'registered'), registration(bob, 'registered')];
    alice.start();
    bob.start();
    await within(10000, 'alice and bob registered', Promise.all(regs));
    report('registered');

    // A MESSAGE the test sends from behind the proxy (as carol).
    const fromTest = await within(10000, 'the test\'s MESSAGE to bob', inbox.take(function (m) { return m.from === 'carol'; }));
    report('message-from-test', fromTest);

    const code = await within(5000, 'alice\'s MESSAGE answered', sendMessage(alice, 'bob', 'hello bob ' + token));
    report('message-sent', { status: code });
    const got = await within(5000, 'bob receiving alice\'s MESSAGE', inbox.take(function (m) { return m.from === 'alice'; }));
    report('message-received', got);

    await call(alice, calls);

    const unregs = [registration(alice, 'unregistered'), registration(bob, 'unregistered')];
    alice.unregister();
    bob.unregister();
    await within(5000, 'alice and bob unregistered', Promise.all(unregs));
    report('unregistered');
    alice.stop();
    bob.stop();
  }

  window.addEventListener('load', function () {
    if (typeof JsSIP === 'undefined' || !wsURL || !domain) {
      state.failed = 'JsSIP not loaded or ws/domain missing from the query string';
      report('failed', { reason: state.failed });
      state.done = true;
      return;
    }
    report('start', { jssip: JsSIP.version, ws: wsURL });
    scenario().then(function () {
      report('done');
    }, function (err) {
      state.failed = String(err && err.message ? err.message : err);
      report('failed', { reason: state.failed });
    }).finally(function () {
      state.done = true;
    });
  });
})();
