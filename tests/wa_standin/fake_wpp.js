/*
 * A stand-in for wa-js 4.6.0 (window.WPP) on the stand-in for WhatsApp Web, for wactl's
 * tests. The engine injects it instead of the real bundle (browser.wa_js_path).
 *
 * It offers wa-js's names for everything wactl's bridge uses (wactl/wajs_api.py lists
 * them) and behaves as the real library does at v4.6.0, awkward parts included: every
 * behaviour below names the wa-js source file (under src/ at the tag v4.6.0) or the
 * other public source it follows. Where the real library fails, this fails the same way
 * (WPPError codes such as chat_not_found, msg_not_found, invalid_wid,
 * message_key_remote_id_is_not_same_of_chat); nothing here is more lenient than wa-js.
 *
 * WhatsApp's side (its servers, the phone, the customers) is played by the test over
 * HTTP on the page's own origin (tests/wa_standin/__init__.py): the page long-polls
 * /standin/poll for commands, reports what happens to /standin/event, hands sent messages
 * to /standin/send, and asks /standin/search and /standin/contact what the server knows.
 * The device's identity is an id in the profile's localStorage (a wiped profile is a new
 * device). Its store (the link, chats, messages, unread counts, the LID <-> phone number
 * cache) is what WhatsApp Web keeps in IndexedDB; here the test's server keeps it for the
 * device (/standin/device), and every change is committed there before the page goes on
 * (before a delivery receipt, before a send), as an IndexedDB transaction is. A page that
 * dies loses nothing it committed, and the server delivers again what the device never
 * acknowledged.
 */
(() => {
  'use strict';
  if (window.top !== window) {
    return;
  }
  const CONTROL = '/standin';
  const storage = window.localStorage;
  // eventEmitter/index.ts: one emitter; internal events are re-emitted on it.
  const listeners = new Map();

  // config/index.ts: window.WPPConfig is read once, when wa-js loads, merged over
  // config/defaultConfig.ts, and replaced by the merged config.
  const defaultConfig = {
    deviceName: false,
    liveLocationLimit: 10,
    disableGoogleAnalytics: false,
    googleAnalyticsId: null,
    googleAnalyticsUserProperty: {},
    linkPreviewApiServers: null,
    poweredBy: 'WA-JS',
    sendStatusToDevice: false,
    syncAllStatus: true,
  };
  const config = Object.assign({}, defaultConfig, window.WPPConfig || {});
  window.WPPConfig = config;

  // util/linkPreview.ts: the servers link previews are fetched through.
  const defaultLinkPreviewServers = [
    'https://cobrancas.uppermesh.com.br:8000',
    'https://wajsapi.titanchat.com.br',
    'https://wppc-linkpreview.cloudtrix.com.br',
  ];
  const linkPreviewServers = config.linkPreviewApiServers || defaultLinkPreviewServers;
  // gtag/Tracker.ts
  const ANALYTICS_URL = 'https://analytics.google.com/g/collect';

  class WPPError extends Error {
    // util/errors.ts
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  // --- ids: Wid and MsgKey (util/createWid.ts, whatsapp/misc/MsgKey.ts) -------------------

  function createWid(id) {
    if (id && typeof id === 'object' && typeof id._serialized === 'string') {
      id = id._serialized;
    }
    if (typeof id !== 'string' || !id) {
      return undefined;
    }
    let match = /^(\d+)@(c\.us|lid|g\.us)$/.exec(id) || /^(\d+-\d+)@(g\.us)$/.exec(id);
    if (!match && /^\d+$/.test(id)) {
      match = [id, id, 'c.us'];
    }
    if (!match && id === 'status@broadcast') {
      match = [id, 'status', 'broadcast'];
    }
    if (!match) {
      return undefined;
    }
    return makeWid(match[1], match[2]);
  }

  function makeWid(user, server) {
    const text = user + '@' + server;
    return {
      user,
      server,
      _serialized: text,
      toString: () => text,
      isLid: () => server === 'lid',
      isGroup: () => server === 'g.us',
      isUser: () => server === 'c.us' || server === 'lid',
      equals: (other) => Boolean(other) && String(other) === text,
    };
  }

  function assertWid(id) {
    // assert/assertWid.ts
    const wid = createWid(id);
    if (!wid) {
      throw new WPPError('invalid_wid', 'Invalid WID value for ' + id);
    }
    return wid;
  }

  function makeKey(fromMe, remote, id) {
    const text = String(fromMe) + '_' + remote + '_' + id;
    return { fromMe, remote: createWid(remote), id, _serialized: text, toString: () => text };
  }

  function keyFromString(text) {
    // MsgKey.fromString: "<fromMe>_<remote>_<id>"
    const match = /^(true|false)_([^_]+)_([^_]+)(?:_.*)?$/.exec(String(text));
    if (!match || !createWid(match[2])) {
      throw new Error('MsgKey error: invalid key ' + text);
    }
    return makeKey(match[1] === 'true', match[2], match[3]);
  }

  function randomMessageId() {
    // WhatsApp Web's ids for messages sent from the web: 3EB0 and uppercase hex.
    let id = '3EB0';
    for (let i = 0; i < 18; i += 1) {
      id += '0123456789ABCDEF'[Math.floor(Math.random() * 16)];
    }
    return id;
  }

  // --- the device's store (what WhatsApp Web keeps in the profile) -----------------------

  let session = storage.getItem('standin.session');
  if (!session) {
    session = Math.random().toString(16).slice(2, 14);
    storage.setItem('standin.session', session);
  }
  // Loaded from the device's storage at boot (see the header).
  let store = { linked: false, me: null, meLid: null, chats: {}, lidPn: {} };

  function commit(change) {
    // One IndexedDB transaction: applied here and on the device's storage, durably.
    return call('/device', change);
  }

  async function forget() {
    // WhatsApp Web clears its storage when it logs out; the next link is a new device.
    store = { linked: false, me: null, meLid: null, chats: {}, lidPn: {} };
    await commit({ op: 'forget' });
    storage.removeItem('standin.session');
  }

  function chatOf(id) {
    return store.chats[id] || null;
  }

  function ensureChat(id) {
    if (!store.chats[id]) {
      store.chats[id] = { lastReceivedKey: null, unreadCount: 0, msgs: [] };
    }
    return store.chats[id];
  }

  function findRecord(id) {
    for (const chat of Object.values(store.chats)) {
      const found = chat.msgs.find((record) => record.id === id);
      if (found) {
        return found;
      }
    }
    return null;
  }

  async function addRecord(record) {
    const chat = ensureChat(record.chat);
    chat.msgs.push(record);
    if (!record.fromMe) {
      chat.lastReceivedKey = record.id;
      chat.unreadCount += 1;
    }
    await commit({ op: 'message', record });
  }

  // A stored record as a message model (whatsapp/models/MsgModel.ts: the fields the
  // bridge reads, plus the accessors chat/events/registerNewMessageEvent.ts adds).
  const models = new Map();
  function model(record, isNewMsg) {
    let msg = models.get(record.id);
    if (!msg) {
      const handlers = new Map();
      msg = {
        once(name, handler) {
          handlers.set(name, handler);
        },
        _changed(name) {
          const handler = handlers.get(name);
          handlers.delete(name);
          if (handler) {
            handler();
          }
        },
      };
      models.set(record.id, msg);
    }
    const group = record.chat.endsWith('@g.us');
    Object.assign(msg, {
      id: makeKey(record.fromMe, record.chat, record.key),
      body: record.body,
      type: record.type,
      t: record.t,
      from: createWid(record.from),
      to: createWid(record.to),
      author: record.author ? createWid(record.author) : undefined,
      ack: record.ack,
      isNotification: Boolean(record.isNotification),
      broadcast: Boolean(record.broadcast),
      isStatusV3: record.chat === 'status@broadcast',
      isGroupMsg: group,
    });
    // New when it arrives; a message read back from the store is history, unless
    // getMessages({onlyUnread}) marks it new (chat/functions/getMessages.ts).
    if (isNewMsg !== undefined) {
      msg.isNewMsg = Boolean(isNewMsg);
    } else if (msg.isNewMsg === undefined) {
      msg.isNewMsg = false;
    }
    return msg;
  }

  // --- events ------------------------------------------------------------------------------

  function emit(name, ...values) {
    for (const listener of listeners.get(name) || []) {
      try {
        listener(...values);
      } catch (error) {
        console.error('listener of ' + name + ' failed', error);
      }
    }
  }

  // chat/events/registerNewMessageEvent.ts: MsgStore 'add' of a new message emits
  // chat.new_message in a microtask; a ciphertext message emits it again once its type
  // changes (it was decrypted).
  function announce(record) {
    const msg = model(record, true);
    queueMicrotask(() => {
      if (record.type === 'ciphertext') {
        msg.once('change:type', () => queueMicrotask(() => emit('chat.new_message', msg)));
      }
      emit('chat.new_message', msg);
    });
  }

  async function call(path, body) {
    const response = await fetch(CONTROL + path + '?session=' + session, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}),
    });
    if (!response.ok) {
      throw new Error('stand-in ' + path + ': HTTP ' + response.status);
    }
    return response.json();
  }

  function report(event, data) {
    return call('/event', { event, data }).catch((error) => {
      console.error('cannot report ' + event, error);
    });
  }

  // --- the connection -------------------------------------------------------------------

  let settings = { rotateMs: 60000, readyDelayMs: 0, withholdReady: false };
  let isReady = false; // loader/index.ts: true once WhatsApp Web's modules are found
  let mode = null; // whatsapp/enums/StreamMode.ts
  let mainReady = false; // conn/functions/isMainReady.ts: set once, never reset
  let mainReadyArmed = true; // conn/events/registerMainReadyEvent.ts
  let authCode = null;
  let codes = 0;
  let rotation = null;
  let keepAlive = null;

  function setMode(next) {
    if (next === mode) {
      return;
    }
    mode = next;
    // conn/events/registerStreamEvent.ts: every change of Stream.mode.
    emit('conn.stream_mode_changed', mode);
    // conn/events/registerMainReadyEvent.ts: main_ready on the first mode that is MAIN
    // *or QR*, once per page; isMainReady turns true with it and stays true.
    if (mainReadyArmed && (mode === 'MAIN' || mode === 'QR')) {
      mainReadyArmed = false;
      mainReady = true;
      emit('conn.main_ready');
    }
    report('mode', { mode });
  }

  function newCode() {
    codes += 1;
    const full =
      'standin:' + session + ':' + codes + ':' + Math.random().toString(16).slice(2, 10);
    authCode = { type: 'multidevice', ref: String(codes), fullCode: full };
    // conn/events/registerAuthCodeChangeEvent.ts: on each change of Conn.ref.
    emit('conn.auth_code_change', authCode);
    report('qr', { qr: full });
  }

  function showCodes() {
    clearInterval(rotation);
    newCode();
    rotation = setInterval(newCode, settings.rotateMs);
  }

  function becomeReady() {
    if (store.linked && mode !== 'MAIN') {
      setMode('MAIN');
      report('ready', { me: store.me });
      resendPending();
    }
  }

  function syncThenReady() {
    setMode('SYNCING');
    if (!settings.withholdReady) {
      setTimeout(becomeReady, settings.readyDelayMs);
    }
  }

  // Messages still at ACK.CLOCK (whatsapp/enums/ACK.ts) were stored on the device but
  // never reached the server: WhatsApp Web sends them when it is connected again
  // (MsgModel.resend in whatsapp/models/MsgModel.ts; WhatsApp's clock icon: "waiting
  // to be sent").
  function resendPending() {
    for (const chat of Object.values(store.chats)) {
      for (const record of chat.msgs) {
        if (record.fromMe && record.ack === 0 && record.local) {
          toServer(record).catch((error) => console.error('resend failed', error));
        }
      }
    }
  }

  async function toServer(record) {
    const answer = await call('/send', { record });
    record.ack = answer.ack;
    await commit({ op: 'message', record });
    return record.ack;
  }

  // whatsapp-web.js src/Client.js: after a logout WhatsApp Web navigates to
  // /?post_logout=1, a new document (wa-js and the bridge are injected again).
  function reloadAfterLogout() {
    setTimeout(() => window.location.assign('/?post_logout=1'), 50);
  }

  async function loggedOut() {
    clearInterval(rotation);
    await forget();
    // conn/events/registerLogoutEvent.ts: Cmd 'logout'.
    emit('conn.logout');
    await report('logout', {});
    reloadAfterLogout();
  }

  const commands = {
    async scan(args) {
      if (store.linked || !authCode || args.qr !== authCode.fullCode) {
        report('scan_refused', { qr: args.qr });
        return;
      }
      clearInterval(rotation);
      authCode = null;
      store.linked = true;
      store.me = args.me;
      store.meLid = args.meLid;
      await commit({ op: 'link', me: store.me, meLid: store.meLid, deviceName: config.deviceName });
      // conn/functions/getAuthCode.ts: null once authenticated.
      emit('conn.auth_code_change', null);
      syncThenReady();
      // conn/events/registerAuthenticatedEvent.ts: on main_loaded, only when the page
      // started unauthenticated.
      emit('conn.authenticated');
    },
    ready() {
      becomeReady();
    },
    mode(args) {
      setMode(args.mode);
    },
    async deliver(args) {
      const record = args.record;
      if (!findRecord(record.id)) {
        if (record.pn && store.lidPn[record.chat] !== record.pn) {
          store.lidPn[record.chat] = record.pn;
          await commit({ op: 'lidpn', lid: record.chat, pn: record.pn });
        }
        delete record.pn;
        await addRecord(record);
        announce(record);
      }
      // Stored (now or before): the delivery receipt.
      await report('delivered', { id: record.id });
    },
    async decrypt(args) {
      const record = findRecord(args.id);
      if (record && record.type === 'ciphertext') {
        record.type = args.type || 'chat';
        record.body = args.body;
        await commit({ op: 'message', record });
        model(record)._changed('change:type');
      }
    },
    phone_logout() {
      return loggedOut();
    },
    qr_idle() {
      // conn/events/registerQRCodeIdleEvent.ts: Socket state UNPAIRED_IDLE; WhatsApp Web
      // stops rotating the code.
      clearInterval(rotation);
      emit('conn.qrcode_idle');
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
        const response = await fetch(
          CONTROL + '/poll?session=' + session + '&boot=' + settings.boot,
        );
        pending = await response.json();
      } catch (error) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        continue;
      }
      for (const command of pending) {
        const run = commands[command.op];
        if (run) {
          // In order: a delivery is committed before the next command runs.
          await Promise.resolve(run(command.args || {})).catch((error) =>
            console.error('stand-in command ' + command.op + ' failed', error),
          );
        } else {
          console.error('unknown stand-in command ' + command.op);
        }
      }
    }
  }

  function sendAnalytics() {
    // gtag/index.ts, gtag/Tracker.ts: unless disableGoogleAnalytics, a page_view and the
    // user properties go to Google Analytics with navigator.sendBeacon.
    if (!config.disableGoogleAnalytics) {
      navigator.sendBeacon(ANALYTICS_URL + '?v=2&tid=G-MTQ4KY110F&en=page_view');
      if (config.googleAnalyticsId) {
        navigator.sendBeacon(ANALYTICS_URL + '?v=2&tid=' + config.googleAnalyticsId);
      }
    }
  }

  async function boot() {
    try {
      settings = Object.assign(
        settings,
        await call('/hello', {
          userAgent: navigator.userAgent,
          url: window.location.href,
          config,
        }),
      );
      if (settings.device) {
        store = settings.device;
      }
    } catch (error) {
      console.error('the stand-in control server does not answer', error);
    }
    if (settings.refused) {
      // WhatsApp Web's "update your browser" page: its app (and wa-js) never loads.
      console.error('WhatsApp Web (stand-in) turned this browser away: ' + settings.refused);
      return;
    }
    // loader/index.ts: injected, then ready; the register* functions run now.
    isReady = true;
    sendAnalytics();
    poll();
    if (store.linked) {
      emit('conn.auth_code_change', null);
      syncThenReady();
    } else {
      setMode('QR');
      // conn/events/registerRequireAuthEvent.ts: the socket is UNPAIRED.
      emit('conn.require_auth');
      showCodes();
    }
  }

  // --- chat functions ------------------------------------------------------------------

  function requireLinked() {
    if (!store.linked || mode !== 'MAIN') {
      // WhatsApp Web's stores are not loaded: wa-js's calls fail.
      throw new WPPError('not_ready', 'WhatsApp Web is not ready');
    }
  }

  // chat/functions/find.ts (findOrCreateLatestChat): a @c.us number whose contact has a
  // @lid chat resolves to that chat; otherwise the chat is found or created.
  function findChatId(wid) {
    if (wid.server === 'c.us') {
      for (const [lid, pn] of Object.entries(store.lidPn)) {
        if (pn === wid._serialized && chatOf(lid)) {
          return lid;
        }
      }
    }
    return wid._serialized;
  }

  async function find(chatId) {
    requireLinked();
    const id = findChatId(assertWid(chatId));
    if (!chatOf(id)) {
      ensureChat(id);
      await commit({ op: 'chat', chat: id });
    }
    return chatModel(id);
  }

  function chatModel(id) {
    // whatsapp/models/ChatModel.ts: the fields wa-js's chat functions read.
    const chat = chatOf(id);
    const wid = createWid(id);
    return {
      id: wid,
      isUser: wid.isUser(),
      unreadCount: chat ? chat.unreadCount : 0,
      hasUnread: Boolean(chat && chat.unreadCount !== 0),
      lastReceivedKey: chat && chat.lastReceivedKey ? keyFromString(chat.lastReceivedKey) : undefined,
    };
  }

  async function list(options) {
    // chat/functions/list.ts: the chats in the store, filtered.
    options = options || {};
    let chats = Object.keys(store.chats).map(chatModel);
    if (options.onlyUsers) {
      chats = chats.filter((chat) => chat.isUser);
    }
    if (options.onlyGroups) {
      chats = chats.filter((chat) => chat.id.isGroup());
    }
    if (options.onlyWithUnreadMessage) {
      chats = chats.filter((chat) => chat.hasUnread);
    }
    const count = options.count == null ? Infinity : options.count;
    return chats.slice(0, count);
  }

  function assertGetChat(chatId) {
    // assert/assertChat.ts assertGetChat: the chat by its exact id (chat/functions/get.ts).
    const wid = createWid(chatId);
    const chat = wid ? chatOf(wid._serialized) : null;
    if (!chat) {
      throw new WPPError('chat_not_found', 'Chat not found for ' + chatId);
    }
    return chat;
  }

  function firstLink(text) {
    const match = /https?:\/\/[^\s]+/.exec(text || '');
    return match ? match[0] : null;
  }

  function fetchDataFromPNG(url) {
    // util/fetchDataFromPNG.ts: an image, so that no connect-src policy stops it.
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.crossOrigin = 'anonymous';
      img.onload = resolve;
      img.onerror = reject;
      img.src = url;
    });
  }

  async function fetchLinkPreview(url) {
    // chat/functions/prepareLinkPreview.ts -> util/linkPreview.ts: each server in turn,
    // a server that fails is skipped.
    for (const server of linkPreviewServers) {
      await fetchDataFromPNG(
        server + '/v1/link-preview/fetch-data.png?url=' + encodeURI(url),
      ).catch(() => null);
    }
  }

  const defaultSendMessageOptions = {
    // chat/defaultSendMessageOptions.ts
    detectMentioned: true,
    linkPreview: true,
    markIsRead: true,
    waitForAck: true,
    delay: 0,
  };

  async function sendTextMessage(chatId, content, options) {
    options = Object.assign({}, defaultSendMessageOptions, options || {});
    requireLinked();
    // chat/functions/sendTextMessage.ts: the link preview is prepared first.
    if (options.linkPreview) {
      const link = firstLink(content);
      if (link) {
        await fetchLinkPreview(link);
      }
    }
    // chat/functions/sendRawMessage.ts: assertFindChat, then prepareRawMessage.
    const chat = await find(chatId);
    const chatText = chat.id._serialized;
    let key;
    if (options.messageId) {
      // chat/functions/prepareRawMessage.ts
      key =
        typeof options.messageId === 'string'
          ? keyFromString(options.messageId)
          : options.messageId;
      if (!key.fromMe) {
        throw new WPPError('message_key_is_not_from_me', 'Message key is not from me');
      }
      if (!key.remote.equals(chat.id)) {
        throw new WPPError(
          'message_key_remote_id_is_not_same_of_chat',
          'Message key remote ID is not same of chat',
        );
      }
    } else {
      key = await generateMessageID(chatText);
    }
    if (options.delay) {
      await new Promise((resolve) => setTimeout(resolve, options.delay));
    }
    if (options.markIsRead) {
      // sendRawMessage.ts: the chat is marked read before the send, errors ignored.
      await markIsRead(chatText).catch(() => null);
    }
    const record = {
      id: key._serialized,
      key: key.id,
      chat: chatText,
      fromMe: true,
      // prepareRawMessage.ts: the sender matches the chat's addressing.
      from: chat.id.isLid() ? store.meLid : store.me,
      to: chatText,
      author: null,
      body: content,
      type: 'chat',
      t: Math.floor(Date.now() / 1000),
      ack: 0, // ACK.CLOCK
      local: true,
    };
    // addAndSendMsgToChat: the message is in the chat (and chat.new_message fires)
    // before the server has it.
    await addRecord(record);
    announce(record);
    const sending = toServer(record);
    if (options.waitForAck) {
      await sending;
    }
    return {
      id: record.id,
      ack: record.ack,
      from: record.from,
      to: chatText,
      sendMsgResult: options.waitForAck ? { messageSendResult: 'OK' } : null,
    };
  }

  async function generateMessageID(chat) {
    // chat/functions/generateMessageID.ts: for the chat as given (callers pass the
    // resolved chat; a @c.us id is not resolved here).
    const to = chat && chat.id ? chat.id : assertWid(chat);
    return makeKey(true, String(to), randomMessageId());
  }

  async function getMessageById(id) {
    // chat/functions/getMessageById.ts: the store, else the chat's messages, else a
    // search of the server around the key; msg_not_found when none has it.
    const key = keyFromString(id);
    let record = findRecord(key._serialized);
    if (!record) {
      assertGetChat(key.remote);
      const answer = await call('/search', { id: key._serialized });
      if (answer.record) {
        record = answer.record;
        const chat = ensureChat(record.chat);
        chat.msgs.push(record);
        await commit({ op: 'message', record });
      }
    }
    if (!record) {
      throw new WPPError('msg_not_found', 'Message ' + key._serialized + ' not found');
    }
    return model(record, false);
  }

  async function getMessages(chatId, options) {
    // chat/functions/getMessages.ts: anchored on the chat's lastReceivedKey (a chat
    // without one gives nothing, and replies sent after it are not among the messages);
    // onlyUnread: the chat's unread ones (2 for a chat marked unread by hand), none when
    // it has none.
    options = options || {};
    const chat = assertGetChat(chatId);
    let count = options.count || 20;
    if (options.onlyUnread) {
      if (chat.unreadCount === 0) {
        return [];
      }
      const unread = chat.unreadCount < 0 ? 2 : chat.unreadCount;
      count = count < 0 ? unread : Math.min(count, unread);
    }
    if (count < 0) {
      count = Infinity;
    }
    const anchor = options.id || chat.lastReceivedKey;
    if (!anchor) {
      return [];
    }
    const end = chat.msgs.findIndex((record) => record.id === anchor);
    if (end < 0) {
      return [];
    }
    return chat.msgs
      .slice(Math.max(0, end + 1 - count), end + 1)
      .map((record) => model(record, Boolean(options.onlyUnread)));
  }

  async function markIsRead(chatId) {
    // chat/functions/markIsRead.ts: assertGetChat, then sendSeen (the read receipt).
    requireLinked();
    const chat = assertGetChat(chatId);
    const unreadCount = chat.unreadCount;
    chat.unreadCount = 0;
    await commit({ op: 'read', chat: String(chatId) });
    return { wid: createWid(chatId), unreadCount };
  }

  async function getPnLidEntry(contactId) {
    // contact/functions/getPnLidEntry.ts: only @c.us and @lid; a LID's number comes from
    // the local cache only, a number's LID from the cache or the server.
    const wid = assertWid(contactId);
    if (wid.server !== 'c.us' && wid.server !== 'lid') {
      throw new WPPError('invalid_wid', 'Invalid WID value for ' + contactId);
    }
    let lid;
    let pn;
    if (wid.isLid()) {
      lid = wid;
      pn = store.lidPn[wid._serialized] ? createWid(store.lidPn[wid._serialized]) : undefined;
    } else {
      pn = wid;
      const cached = Object.keys(store.lidPn).find((l) => store.lidPn[l] === wid._serialized);
      if (cached) {
        lid = createWid(cached);
      } else {
        const answer = await call('/contact', { id: wid._serialized });
        lid = answer.lid ? createWid(answer.lid) : undefined;
      }
    }
    const plain = (w) => (w ? { id: w.user, server: w.server, _serialized: w._serialized } : undefined);
    return { lid: plain(lid), phoneNumber: plain(pn), contact: undefined };
  }

  window.WPP = {
    version: '4.6.0-standin',
    get isReady() {
      return isReady;
    },
    config,
    on(name, listener) {
      if (!listeners.has(name)) {
        listeners.set(name, []);
      }
      listeners.get(name).push(listener);
    },
    conn: {
      isAuthenticated: () => store.linked,
      isMainReady: () => mainReady,
      getStreamData: () => ({ mode, info: undefined }),
      // conn/functions/getAuthCode.ts: null once authenticated.
      getAuthCode: async () => (store.linked ? null : authCode),
      async refreshQR() {
        // conn/functions/refreshQR.ts
        if (store.linked) {
          return null;
        }
        await report('refresh_qr', {});
        showCodes();
        return authCode;
      },
      getMyUserId: () => (store.me ? createWid(store.me) : undefined),
      async logout() {
        // conn/functions/logout.ts: Socket.logout, then Cmd 'logout'.
        await report('logout_requested', {});
        await loggedOut();
        return true;
      },
      setKeepAlive(enable = true) {
        // conn/functions/setKeepAlive.ts
        clearInterval(keepAlive);
        keepAlive = enable ? setInterval(() => document.dispatchEvent(new Event('scroll')), 15000) : null;
        report('keep_alive', { enabled: Boolean(keepAlive) });
        return Boolean(keepAlive);
      },
    },
    chat: {
      find,
      list,
      generateMessageID,
      sendTextMessage,
      getMessageById,
      getMessages,
      markIsRead,
    },
    contact: {
      getPnLidEntry,
    },
  };

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', boot);
  } else {
    setTimeout(boot, 0);
  }
})();
