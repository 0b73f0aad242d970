/*
 * wactl's bridge between wa-js (window.WPP) and the worker driving this page.
 *
 * Injected after window.WPPConfig and the wa-js bundle into every new document of the
 * page (Playwright's addInitScript, which WhatsApp Web's Content-Security-Policy cannot
 * block). It forwards wa-js events to the worker through the `__wactlEmit` binding and
 * offers the worker a few calls as `window.__wactl`. It uses only wa-js's public API;
 * every WPP name it touches is listed in wactl/wajs_api.py, and a test checks that the
 * two agree.
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

  // "true_123@lid_3EB0..." -> "123@lid": the chat a message id belongs to.
  function remoteOf(id) {
    const parts = String(id).split('_');
    return parts.length >= 3 ? parts[1] : null;
  }

  // Ids of the replies this worker prepared: their chat.new_message events are the
  // bot's own messages, not the owner typing (whatever chat id they carry).
  const ownIds = new Set();
  function remember(id) {
    ownIds.add(id);
    if (ownIds.size > 5000) {
      ownIds.delete(ownIds.values().next().value);
    }
  }

  // The phone number behind a @lid id, when WhatsApp Web knows it; null otherwise.
  async function phoneOf(id) {
    if (typeof id !== 'string' || !id.endsWith('@lid')) {
      return null;
    }
    try {
      const entry = await window.WPP.contact.getPnLidEntry(id);
      const number = entry && entry.phoneNumber;
      return number && typeof number._serialized === 'string' ? number._serialized : null;
    } catch (error) {
      return null;
    }
  }

  // A message model as plain data for the worker (which decides what to answer).
  async function plain(msg) {
    const key = msg.id || {};
    const fromMe = Boolean(key.fromMe);
    const chat = wid(key.remote) || wid(fromMe ? msg.to : msg.from);
    const id = wid(key);
    const author = wid(msg.author);
    return {
      id,
      fromMe,
      byBot: ownIds.has(id),
      chat,
      chatPn: await phoneOf(chat),
      from: wid(msg.from),
      to: wid(msg.to),
      author,
      authorPn: await phoneOf(author),
      body: typeof msg.body === 'string' ? msg.body : null,
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
    // Keep the page focused and online, as the reference client does.
    try {
      WPP.conn.setKeepAlive(true);
    } catch (error) {
      emit('error', 'conn.setKeepAlive failed: ' + error);
    }
    WPP.on('conn.auth_code_change', (code) => emit('auth_code', authText(code)));
    // Unattended, WhatsApp Web stops rotating the QR after a few minutes; an owner who
    // comes later must still find a live one.
    WPP.on('conn.qrcode_idle', () => {
      WPP.conn.refreshQR().catch((error) => emit('error', 'the QR could not be refreshed: ' + error));
    });
    WPP.on('conn.authenticated', () => emit('authenticated', null));
    // With the authenticated state: the link is decided from both (on a restart of a
    // linked profile wa-js fires no conn.authenticated).
    WPP.on('conn.stream_mode_changed', (mode) => {
      let authenticated = null;
      try {
        authenticated = Boolean(WPP.conn.isAuthenticated());
      } catch (error) {
        authenticated = null;
      }
      emit('stream_mode', { mode: typeof mode === 'string' ? mode : null, authenticated });
    });
    WPP.on('conn.logout', () => emit('logout', null));
    WPP.on('conn.require_auth', () => emit('require_auth', null));
    // Reading a message may wait for the LID map: one at a time, so that the worker
    // hears them in the order wa-js fired them.
    let reading = Promise.resolve();
    WPP.on('chat.new_message', (msg) => {
      reading = reading.then(async () => {
        let data;
        try {
          data = await plain(msg);
        } catch (error) {
          emit('error', 'a chat.new_message event could not be read: ' + error);
          return;
        }
        emit('message', data);
      });
    });
  }

  function failure(error) {
    // wa-js's errors (WPPError) carry a code: chat_not_found, msg_not_found...
    return error && typeof error.code === 'string' ? error.code : null;
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
      let mode = null;
      try {
        mode = api.conn.getStreamData().mode || null;
      } catch (error) {
        mode = null;
      }
      return {
        ready: true,
        version: typeof api.version === 'string' ? api.version : null,
        authenticated: Boolean(api.conn.isAuthenticated()),
        mode,
        me,
      };
    },
    async authCode() {
      return authText(await window.WPP.conn.getAuthCode());
    },
    // A reply's id, fixed before it is sent: made for the chat WhatsApp Web resolves
    // the number to (its @lid chat when it has one), so the send cannot be refused for
    // naming another chat.
    async prepare(chatId) {
      const chat = await window.WPP.chat.find(chatId);
      const id = wid(await window.WPP.chat.generateMessageID(chat));
      remember(id);
      return id;
    },
    async send(id, text, options) {
      remember(id);
      const result = await window.WPP.chat.sendTextMessage(
        remoteOf(id),
        text,
        Object.assign({}, options, { messageId: id }),
      );
      return { id: wid(result && result.id), ack: result ? result.ack : null };
    },
    // Whether WhatsApp Web has the message `id` (and its ack), for `was_sent`.
    async lookup(id) {
      let msg;
      try {
        msg = await window.WPP.chat.getMessageById(id);
      } catch (error) {
        if (failure(error) === 'chat_not_found') {
          // The device lost the chat (a crash before it was saved): recreate it so the
          // server can be searched for the message.
          await window.WPP.chat.find(remoteOf(id));
          try {
            msg = await window.WPP.chat.getMessageById(id);
          } catch (again) {
            if (failure(again) === 'msg_not_found') {
              return { found: false };
            }
            throw again;
          }
        } else if (failure(error) === 'msg_not_found') {
          return { found: false };
        } else {
          throw error;
        }
      }
      return { found: true, ack: typeof msg.ack === 'number' ? msg.ack : null };
    },
    // The unread messages of the chats that have any, oldest first per chat: after a
    // crash, what reached the device but maybe not the worker.
    async unread(chats, count) {
      const found = [];
      const list = await window.WPP.chat.list({
        onlyWithUnreadMessage: true,
        count: chats,
        ignoreGroupMetadata: true,
      });
      for (const chat of list) {
        let messages = [];
        try {
          messages = await window.WPP.chat.getMessages(chat.id, { count, onlyUnread: true });
        } catch (error) {
          continue; // the chat went away meanwhile
        }
        for (const msg of messages) {
          found.push(await plain(msg));
        }
      }
      return found;
    },
    async markRead(chatId) {
      await window.WPP.chat.markIsRead(chatId);
      return true;
    },
    async logout() {
      return Boolean(await window.WPP.conn.logout());
    },
  });
})();
