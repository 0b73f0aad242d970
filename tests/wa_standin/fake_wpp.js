/*
 * A stand-in for wa-js (window.WPP) on the stand-in for WhatsApp Web, for wactl's tests.
 *
 * It offers the same names as wa-js for everything wactl's bridge uses (WPP.on, isReady,
 * version, conn.*, chat.*; see WPP_EVENTS and WPP_FUNCTIONS in
 * wactl/bot/engines/whatsapp_web.py) and plays WhatsApp's part behind them: a rotating
 * auth code until "the phone" scans it, a session kept in the profile (localStorage, as
 * WhatsApp Web keeps its keys in the profile), customers' messages, sends.
 *
 * The test drives it over HTTP on the page's own origin (tests/wa_standin/__init__.py):
 * the page long-polls /standin/poll for commands and reports what happens to
 * /standin/event. The engine injects this file instead of wa-js (browser.wa_js_path).
 */
(() => {
  'use strict';
  if (window.top !== window) {
    return;
  }
  const CONTROL = '/standin';
  const storage = window.localStorage;
  const listeners = new Map();

  let session = storage.getItem('standin.session');
  if (!session) {
    session = Math.random().toString(16).slice(2, 14);
    storage.setItem('standin.session', session);
  }
  let authenticated = storage.getItem('standin.authenticated') === '1';
  let me = storage.getItem('standin.me') || '15550000000';
  let ready = false;
  let mainReady = false;
  let authCode = null;
  let codes = 0;
  let rotation = null;
  let settings = { rotateMs: 60000, readyDelayMs: 0, withholdReady: false };
  const chats = JSON.parse(storage.getItem('standin.chats') || '{}');

  function fire(name, value) {
    for (const listener of listeners.get(name) || []) {
      try {
        listener(value);
      } catch (error) {
        console.error('listener of ' + name + ' failed', error);
      }
    }
  }

  async function report(event, data) {
    try {
      await fetch(CONTROL + '/event?session=' + session, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ event, data }),
      });
    } catch (error) {
      console.error('cannot report ' + event, error);
    }
  }

  function widOf(text) {
    return { _serialized: text, toString: () => text };
  }

  function randomKey() {
    let key = '3EB0';
    for (let i = 0; i < 16; i += 1) {
      key += '0123456789ABCDEF'[Math.floor(Math.random() * 16)];
    }
    return key;
  }

  // A stored record as a message model (the fields wa-js's Msg has that wactl reads).
  function model(record) {
    return {
      id: {
        fromMe: record.fromMe,
        remote: widOf(record.chat),
        id: record.key,
        _serialized: record.id,
      },
      body: record.body,
      type: record.type,
      t: record.t,
      from: widOf(record.from),
      to: widOf(record.to),
      author: record.author ? widOf(record.author) : undefined,
      isNewMsg: true,
      isNotification: Boolean(record.isNotification),
      broadcast: Boolean(record.broadcast),
      isStatusV3: record.chat === 'status@broadcast',
      isGroupMsg: record.chat.endsWith('@g.us'),
    };
  }

  function remember(record) {
    const history = chats[record.chat] || (chats[record.chat] = []);
    history.push(record);
    if (history.length > 200) {
      history.shift();
    }
    storage.setItem('standin.chats', JSON.stringify(chats));
  }

  function newCode() {
    codes += 1;
    const full = 'standin:' + session + ':' + codes + ':' + Math.random().toString(16).slice(2, 10);
    authCode = { type: 'multidevice', ref: String(codes), fullCode: full };
    fire('conn.auth_code_change', authCode);
    report('qr', { qr: full });
  }

  function showCodes() {
    clearInterval(rotation);
    newCode();
    rotation = setInterval(newCode, settings.rotateMs);
  }

  function becomeReady() {
    if (authenticated && !mainReady) {
      mainReady = true;
      fire('conn.main_ready', undefined);
      report('ready', { me });
    }
  }

  function unlink() {
    authenticated = false;
    mainReady = false;
    storage.removeItem('standin.authenticated');
  }

  const commands = {
    scan(args) {
      if (authenticated || !authCode || args.qr !== authCode.fullCode) {
        report('scan_refused', { qr: args.qr });
        return;
      }
      clearInterval(rotation);
      authCode = null;
      authenticated = true;
      me = args.me || me;
      storage.setItem('standin.authenticated', '1');
      storage.setItem('standin.me', me);
      fire('conn.authenticated', undefined);
      fire('conn.auth_code_change', null);
      if (!settings.withholdReady) {
        setTimeout(becomeReady, settings.readyDelayMs);
      }
    },
    ready() {
      becomeReady();
    },
    message(args) {
      const chat = args.chat;
      const fromMe = Boolean(args.fromMe);
      const key = args.key || randomKey();
      const group = chat.endsWith('@g.us');
      const record = {
        id: String(fromMe) + '_' + chat + '_' + key + (group && args.author ? '_' + args.author : ''),
        key,
        chat,
        fromMe,
        from: fromMe ? me + '@c.us' : chat,
        to: fromMe ? chat : me + '@c.us',
        author: group ? args.author || null : null,
        body: args.body,
        type: args.type || 'chat',
        t: Math.floor(Date.now() / 1000),
        isNotification: Boolean(args.isNotification),
        broadcast: Boolean(args.broadcast),
      };
      remember(record);
      fire('chat.new_message', model(record));
      report('delivered', { id: record.id });
    },
    phone_logout() {
      unlink();
      fire('conn.logout', undefined);
      fire('conn.require_auth', undefined);
      showCodes();
    },
    qr_idle() {
      // WhatsApp Web stops rotating the code after a while and waits for a click.
      clearInterval(rotation);
      fire('conn.qrcode_idle', undefined);
      report('qr_idle', {});
    },
    hang() {
      report('hanging', {}).then(() => {
        for (;;) {
          // a page that never answers again
        }
      });
    },
  };

  async function poll() {
    for (;;) {
      let pending = [];
      try {
        const response = await fetch(CONTROL + '/poll?session=' + session);
        pending = await response.json();
      } catch (error) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        continue;
      }
      for (const command of pending) {
        const run = commands[command.op];
        if (run) {
          run(command.args || {});
        } else {
          console.error('unknown stand-in command ' + command.op);
        }
      }
    }
  }

  async function boot() {
    try {
      const response = await fetch(CONTROL + '/hello?session=' + session, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ authenticated, me, userAgent: navigator.userAgent }),
      });
      settings = Object.assign(settings, await response.json());
    } catch (error) {
      console.error('the stand-in control server does not answer', error);
    }
    if (settings.refused) {
      // WhatsApp Web's "update your browser" page: its app (and wa-js) never loads.
      console.error('WhatsApp Web (stand-in) turned this browser away: ' + settings.refused);
      return;
    }
    ready = true; // what wa-js calls "injected": its API works from here
    if (authenticated) {
      fire('conn.auth_code_change', null);
      if (!settings.withholdReady) {
        setTimeout(becomeReady, settings.readyDelayMs);
      }
    } else {
      fire('conn.require_auth', undefined);
      showCodes();
    }
    poll();
  }

  window.WPP = {
    version: '0.0.0-standin',
    get isReady() {
      return ready;
    },
    on(name, listener) {
      if (!listeners.has(name)) {
        listeners.set(name, []);
      }
      listeners.get(name).push(listener);
    },
    conn: {
      isAuthenticated: () => authenticated,
      isMainReady: () => mainReady,
      getAuthCode: async () => (authenticated ? null : authCode),
      async refreshQR() {
        await report('refresh_qr', {});
        if (!authenticated) {
          showCodes();
        }
      },
      getMyUserId: () => (authenticated ? widOf(me + '@c.us') : undefined),
      async logout() {
        unlink();
        await report('logout', {});
        fire('conn.logout', undefined);
        return true;
      },
    },
    chat: {
      async sendTextMessage(chatId, content) {
        if (!authenticated || !mainReady) {
          throw new Error('not logged in');
        }
        if (!/^[0-9]+@(c\.us|g\.us|lid)$/.test(String(chatId))) {
          throw new Error('invalid chat id: ' + chatId);
        }
        const key = randomKey();
        const record = {
          id: 'true_' + chatId + '_' + key,
          key,
          chat: String(chatId),
          fromMe: true,
          from: me + '@c.us',
          to: String(chatId),
          author: null,
          body: content,
          type: 'chat',
          t: Math.floor(Date.now() / 1000),
        };
        remember(record);
        // WhatsApp Web adds the message to its store before the server accepts it: the
        // chat.new_message event of the bot's own message comes before this returns.
        fire('chat.new_message', model(record));
        await report('sent', { chat: record.chat, body: content, id: record.id });
        return { id: record.id, ack: 1, sendMsgResult: Promise.resolve('OK') };
      },
      async getMessages(chatId, options) {
        const count = (options && options.count) || 20;
        return (chats[String(chatId)] || []).slice(-count).map(model);
      },
    },
  };

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', boot);
  } else {
    setTimeout(boot, 0);
  }
})();
