/*
 * wactl's bridge between wa-js (window.WPP) and the worker driving this page.
 *
 * Injected right after the wa-js bundle into every new document of the page (Playwright's
 * addInitScript, which WhatsApp Web's Content-Security-Policy cannot block). It forwards
 * wa-js events to the worker through the `__wactlEmit` binding and offers the worker a few
 * calls as `window.__wactl`. It uses only wa-js's public API; every WPP name it touches is
 * listed in wactl.bot.engines.whatsapp_web (WPP_EVENTS, WPP_FUNCTIONS), and a test checks
 * that the two lists stay the same.
 */
(() => {
  'use strict';
  if (window.top !== window || window.__wactl) {
    return; // frames inside WhatsApp Web need none of this; nor does a second injection
  }

  // Events raised before the binding exists wait here (the binding is normally installed
  // first; this only guards the order).
  const waiting = [];
  function emit(name, data) {
    const binding = window.__wactlEmit;
    if (typeof binding !== 'function') {
      waiting.push([name, data]);
      setTimeout(() => emit('flush', null), 50);
      return;
    }
    while (waiting.length) {
      const [queuedName, queuedData] = waiting.shift();
      binding(queuedName, queuedData === undefined ? null : queuedData).catch(() => {});
    }
    if (name !== 'flush') {
      binding(name, data === undefined ? null : data).catch(() => {});
    }
  }

  // A WhatsApp id (Wid, MsgKey) or string as its "123@c.us" text form.
  function wid(value) {
    if (value === null || value === undefined) {
      return null;
    }
    if (typeof value === 'string') {
      return value;
    }
    if (typeof value._serialized === 'string') {
      return value._serialized;
    }
    return String(value);
  }

  // Messages this bot sent: their chat.new_message events are not the owner typing.
  const ownIds = new Set();
  const inFlight = []; // [chat, text] of sends under way (the event may come first)

  function remember(id) {
    ownIds.add(id);
    if (ownIds.size > 5000) {
      ownIds.delete(ownIds.values().next().value);
    }
  }

  // A message model as plain data for the worker (which decides what to answer).
  function plain(msg) {
    const key = msg.id || {};
    const fromMe = Boolean(key.fromMe);
    const chat = wid(key.remote) || wid(fromMe ? msg.to : msg.from);
    const id = wid(key);
    const body = typeof msg.body === 'string' ? msg.body : null;
    const byBot =
      ownIds.has(id) || (fromMe && inFlight.some(([c, t]) => c === chat && t === body));
    return {
      id,
      fromMe,
      byBot,
      chat,
      from: wid(msg.from),
      to: wid(msg.to),
      author: wid(msg.author),
      body,
      type: typeof msg.type === 'string' ? msg.type : null,
      t: typeof msg.t === 'number' ? msg.t : null,
      isGroupMsg: Boolean(msg.isGroupMsg),
      isNotification: Boolean(msg.isNotification),
      broadcast: Boolean(msg.broadcast),
      isStatus: Boolean(msg.isStatusV3),
      isNewMsg: msg.isNewMsg !== false,
    };
  }

  function authText(code) {
    return code && typeof code.fullCode === 'string' ? code.fullCode : null;
  }

  const WPP = window.WPP;
  if (!WPP || typeof WPP.on !== 'function') {
    emit('error', 'window.WPP is missing: the wa-js bundle did not load');
  } else {
    WPP.on('conn.auth_code_change', (code) => emit('auth_code', authText(code)));
    // Unattended, WhatsApp Web stops rotating the QR after a few minutes; an owner who
    // comes later must still find a live one.
    WPP.on('conn.qrcode_idle', () => {
      WPP.conn.refreshQR().catch((error) => emit('error', 'the QR could not be refreshed: ' + error));
    });
    WPP.on('conn.authenticated', () => emit('authenticated', null));
    WPP.on('conn.main_ready', () => emit('main_ready', null));
    WPP.on('conn.logout', () => emit('logout', null));
    WPP.on('conn.require_auth', () => emit('require_auth', null));
    WPP.on('chat.new_message', (msg) => {
      let data;
      try {
        data = plain(msg);
      } catch (error) {
        emit('error', 'a chat.new_message event could not be read: ' + error);
        return;
      }
      emit('message', data);
    });
  }

  window.__wactl = Object.freeze({
    // The state of wa-js and of the link; also the liveness probe (it runs on the page's
    // main thread, so a hung page does not answer it).
    state() {
      const api = window.WPP;
      if (!api || !api.isReady) {
        return { ready: false };
      }
      let me = null;
      try {
        me = wid(api.conn.getMyUserId());
      } catch (error) {
        me = null;
      }
      return {
        ready: true,
        version: typeof api.version === 'string' ? api.version : null,
        authenticated: Boolean(api.conn.isAuthenticated()),
        mainReady: Boolean(api.conn.isMainReady()),
        me,
      };
    },
    async authCode() {
      return authText(await window.WPP.conn.getAuthCode());
    },
    async send(chat, text) {
      const entry = [chat, text];
      inFlight.push(entry);
      try {
        const result = await window.WPP.chat.sendTextMessage(chat, text, { createChat: true });
        const id = wid(result && result.id);
        if (!id) {
          throw new Error('sendTextMessage returned no message id');
        }
        remember(id);
        return id;
      } finally {
        inFlight.splice(inFlight.indexOf(entry), 1);
      }
    },
    async recent(chat, count) {
      const messages = await window.WPP.chat.getMessages(chat, { count });
      return messages.map(plain);
    },
    async logout() {
      return Boolean(await window.WPP.conn.logout());
    },
  });
})();
