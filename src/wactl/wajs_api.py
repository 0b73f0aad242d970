"""What of wa-js the whatsapp-web engine uses: one definition, as data.

wactl's bridge (``bot/engines/whatsapp_web.js``) calls the `FUNCTIONS`, subscribes to
the `EVENTS`, reads the `VALUES`, passes the options and reads the fields listed in
`MEMBERS`, and sets the `CONFIG` keys before wa-js loads. Everything else is derived
from this module:

- tests/test_whatsapp_web.py checks that the bridge uses exactly these names;
- tests/test_wajs_contract.py loads the real pinned bundle into Chromium and checks
  that each function and value exists there and each event is emitted by it;
- `wactl engine check` (`wactl.wajs_check`) compares every declaration below with the
  package's own type declarations (``dist/**/*.d.ts`` in the npm tarball), so that a
  wa-js version that changes a signature, an option, an event payload or a field the
  engine relies on says what changed before any tenant runs it.

Each declaration is written as it reads in wa-js 4.6.0's ``.d.ts`` files, whitespace
collapsed; ``module`` is the file under ``dist/`` without ``.d.ts``. The ``why`` of each
entry is what the engine does with it, and the wa-js 4.6.0 source file (under ``src/``)
whose behaviour the engine depends on.

Stdlib only, nothing but data: the CLI's ``engine check`` and the worker both import it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Function:
    """A function the bridge calls, as ``WPP.<path>(...)``."""

    path: str
    module: str
    #: Its ``export declare function`` line(s) (several for overloads), in order.
    declarations: tuple[str, ...]
    why: str

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]


@dataclass(frozen=True)
class Event:
    """An event the bridge subscribes to with ``WPP.on(name, listener)``."""

    name: str
    module: str
    #: The interface in ``module`` that maps event names to payload types.
    interface: str
    #: The payload type as declared there ("undefined": no payload).
    payload: str
    why: str


@dataclass(frozen=True)
class Member:
    """A field of an interface, class or enum that the bridge reads or sets."""

    module: str
    #: The interface, class or enum that declares it.
    owner: str
    name: str
    #: The declared type (for an enum member: its value, as written).
    type: str
    optional: bool
    why: str

    @property
    def declaration(self) -> str:
        """As it reads in the ``.d.ts`` file: ``name?: type`` or, for enums, ``NAME = value``."""
        if self.type.startswith(("'", '"')) or self.type.lstrip("-").isdigit():
            return f"{self.name} = {self.type}"
        return f"{self.name}{'?' if self.optional else ''}: {self.type}"


# --- functions -------------------------------------------------------------------------------

FUNCTIONS: tuple[Function, ...] = (
    Function(
        "on",
        "eventEmitter/index",
        (),  # a bound EventEmitter2 method, declared as a const with overloads
        "subscribe to each of EVENTS (eventEmitter/index.ts)",
    ),
    Function(
        "conn.getAuthCode",
        "conn/functions/getAuthCode",
        ("export declare function getAuthCode(): Promise<AuthCode | null>;",),
        "the QR's text when the probe finds none shown yet (conn/functions/getAuthCode.ts: "
        "null once authenticated)",
    ),
    Function(
        "conn.refreshQR",
        "conn/functions/refreshQR",
        ("export declare function refreshQR(): Promise<AuthCode | null>;",),
        "a new QR after conn.qrcode_idle (conn/functions/refreshQR.ts)",
    ),
    Function(
        "conn.isAuthenticated",
        "conn/functions/isAuthenticated",
        ("export declare function isAuthenticated(): boolean;",),
        "half of the link decision: a phone is linked (conn/functions/isAuthenticated.ts)",
    ),
    Function(
        "conn.getStreamData",
        "conn/functions/getStreamData",
        ("export declare function getStreamData(): StreamData;",),
        "the other half: the stream mode; linked and ready only in MAIN "
        "(conn/functions/getStreamData.ts). Not conn.isMainReady, which turns true on the "
        "QR screen too and never back (conn/events/registerMainReadyEvent.ts)",
    ),
    Function(
        "conn.getMyUserId",
        "conn/functions/getMyUserId",
        ("export declare function getMyUserId(): Wid | undefined;",),
        "the linked account's own number (conn/functions/getMyUserId.ts)",
    ),
    Function(
        "conn.logout",
        "conn/functions/logout",
        ("export declare function logout(): Promise<boolean>;",),
        "`wactl tenant logout` (conn/functions/logout.ts)",
    ),
    Function(
        "conn.setKeepAlive",
        "conn/functions/setKeepAlive",
        ("export declare function setKeepAlive(enable?: boolean): boolean;",),
        "keep the page focused and online, as the reference client does "
        "(conn/functions/setKeepAlive.ts; wppconnect src/controllers/browser.ts)",
    ),
    Function(
        "chat.find",
        "chat/functions/find",
        (
            "export declare function find(chatId: string | Wid, originType?: ChatOriginType): "
            "Promise<ChatModel>;",
        ),
        "resolve a reply's target to the chat WhatsApp Web keeps for it: a @c.us number "
        "becomes its existing @lid chat (chat/functions/find.ts, findOrCreateLatestChat)",
    ),
    Function(
        "chat.generateMessageID",
        "chat/functions/generateMessageID",
        (
            "export declare function generateMessageID(chat: string | ChatModel | Wid): "
            "Promise<MsgKey>;",
        ),
        "a reply's id, made for the resolved chat and stored before the send "
        "(chat/functions/generateMessageID.ts)",
    ),
    Function(
        "chat.sendTextMessage",
        "chat/functions/sendTextMessage",
        (
            "export declare function sendTextMessage(chatId: any, content: any, options?: "
            "TextMessageOptions): Promise<SendMessageReturn>;",
        ),
        "send a reply with the stored id as options.messageId "
        "(chat/functions/sendTextMessage.ts, sendRawMessage.ts, prepareRawMessage.ts)",
    ),
    Function(
        "chat.getMessageById",
        "chat/functions/getMessageById",
        (
            "export declare function getMessageById(id: string | MsgKey): Promise<MsgModel>;",
            "export declare function getMessageById(ids: (string | MsgKey)[]): "
            "Promise<MsgModel[]>;",
        ),
        "was_sent after a crash: the stored id is found (and its ack read) or it is not "
        "(chat/functions/getMessageById.ts: throws msg_not_found, or chat_not_found)",
    ),
    Function(
        "chat.list",
        "chat/functions/list",
        ("export declare function list(options?: ChatListOptions): Promise<ChatModel[]>;",),
        "after a crash: the chats with unread messages, whose messages may have reached "
        "the device but not the worker (chat/functions/list.ts)",
    ),
    Function(
        "chat.getMessages",
        "chat/functions/getMessages",
        (
            "export declare function getMessages(chatId: string | Wid, options?: "
            "GetMessagesOptions): Promise<RawMessage[]>;",
        ),
        "their unread messages, reported again (the pipeline drops what it has seen); "
        "with onlyUnread they come marked new (chat/functions/getMessages.ts)",
    ),
    Function(
        "chat.markIsRead",
        "chat/functions/markIsRead",
        (
            "export declare function markIsRead(chatId: string | Wid): Promise<{ wid: Wid; "
            "unreadCount: number; }>;",
        ),
        "read receipts when the bot starts answering (pipeline.read_receipts), not at "
        "every send (chat/functions/markIsRead.ts)",
    ),
    Function(
        "contact.getPnLidEntry",
        "contact/functions/getPnLidEntry",
        (
            "export declare function getPnLidEntry(contactId: string | Wid): "
            "Promise<PnLidEntryResult>;",
        ),
        "the phone number behind a @lid chat, so a customer is one identity "
        "(contact/functions/getPnLidEntry.ts: lidPnCache, no server query for a LID)",
    ),
)

# --- values ------------------------------------------------------------------------------------

#: ``WPP.<path>``: each is defined in the page once wa-js loaded (the contract test
#: checks the `typeof`). ``config`` is where wa-js keeps ``window.WPPConfig``.
VALUES: dict[str, str] = {
    "version": "string",
    "isReady": "boolean",
    "config": "object",
}

# --- events ------------------------------------------------------------------------------------

_CONN_EVENTS = ("conn/events/eventTypes", "ConnEventTypes")
EVENTS: tuple[Event, ...] = (
    Event(
        "conn.auth_code_change",
        *_CONN_EVENTS,
        "AuthCode | null",
        "a new QR to show; null when there is none (conn/events/registerAuthCodeChangeEvent.ts)",
    ),
    Event(
        "conn.qrcode_idle",
        *_CONN_EVENTS,
        "undefined",
        "WhatsApp Web stopped rotating the QR: refresh it (conn/events/registerQRCodeIdleEvent.ts)",
    ),
    Event(
        "conn.authenticated",
        *_CONN_EVENTS,
        "undefined",
        "the phone scanned the QR; the sync follows (conn/events/registerAuthenticatedEvent.ts: "
        "fires on main_loaded, not on a restart of a linked session)",
    ),
    Event(
        "conn.stream_mode_changed",
        *_CONN_EVENTS,
        "StreamMode",
        "the link decision: ready in MAIN (conn/events/registerStreamEvent.ts: emits the "
        "current mode when wa-js is injected, then every change)",
    ),
    Event(
        "conn.logout",
        *_CONN_EVENTS,
        "undefined",
        "unlinked, from the phone or by conn.logout (conn/events/registerLogoutEvent.ts); "
        "WhatsApp Web then reloads the page (whatsapp-web.js src/Client.js, post_logout=1)",
    ),
    Event(
        "conn.require_auth",
        *_CONN_EVENTS,
        "undefined",
        "WhatsApp Web wants a QR scan (conn/events/registerRequireAuthEvent.ts)",
    ),
    Event(
        "chat.new_message",
        "chat/events/eventTypes",
        "ChatEventTypes",
        "MsgModel",
        "customers' messages, the owner's typed on the phone, and the bot's own (before "
        "sendTextMessage returns); a ciphertext message fires again once decrypted "
        "(chat/events/registerNewMessageEvent.ts)",
    ),
)

# --- fields, options and enum members ------------------------------------------------------

_SEND_OPTIONS = ("chat/types", "SendMessageOptions")
_MSG = "whatsapp/models/MsgModel"
_KEY = ("whatsapp/misc/MsgKey", "MsgKey")
_CONFIG = ("config/Config", "Config")
_MODES = ("whatsapp/enums/StreamMode", "StreamMode")
_ACK = ("whatsapp/enums/ACK", "ACK")

MEMBERS: tuple[Member, ...] = (
    # sendTextMessage's options, each set on purpose (chat/defaultSendMessageOptions.ts
    # turns on link previews, read marks and mention detection)
    Member(*_SEND_OPTIONS, "messageId", "string | MsgKey", True, "the id stored before the send"),
    Member(*_SEND_OPTIONS, "waitForAck", "boolean", True, "true: return once the server has it"),
    Member(*_SEND_OPTIONS, "markIsRead", "boolean", True, "false: read receipts are separate"),
    Member(*_SEND_OPTIONS, "detectMentioned", "boolean", True, "false: replies mention nobody"),
    Member(*_SEND_OPTIONS, "delay", "number", True, "0: the pipeline paces replies itself"),
    Member(
        "chat/functions/prepareLinkPreview",
        "LinkPreviewOptions",
        "linkPreview",
        "boolean | { title?: string; description?: string; canonicalUrl?: string; "
        "matchedText?: string; richPreviewType?: number; thumbnail?: string; "
        "doNotPlayInline: boolean; }",
        True,
        "false: no preview fetched through third-party servers (util/linkPreview.ts)",
    ),
    # catching up after a crash (chat/functions/list.ts, getMessages.ts)
    Member(
        "chat/functions/list", "ChatListOptions", "onlyWithUnreadMessage", "boolean", True, "unread"
    ),
    Member("chat/functions/list", "ChatListOptions", "count", "number", True, "at most so many"),
    Member(
        "chat/functions/list", "ChatListOptions", "ignoreGroupMetadata", "boolean", True, "no fetch"
    ),
    Member("chat/functions/getMessages", "GetMessagesOptions", "count", "number", True, "at most"),
    Member(
        "chat/functions/getMessages", "GetMessagesOptions", "onlyUnread", "boolean", True, "unread"
    ),
    Member("whatsapp/models/ModelChatBase", "PropsChatBase", "id", "Wid", False, "the chat"),
    # what sendTextMessage returns (chat/functions/sendRawMessage.ts)
    Member("chat/types", "SendMessageReturn", "id", "string", False, "the sent message's id"),
    Member("chat/types", "SendMessageReturn", "ack", "number", False, "sent once it is >= 1"),
    # the QR (conn/functions/getAuthCode.ts)
    Member("conn/types", "AuthCodeMultiDevice", "fullCode", "string", False, "the QR's text"),
    # the link (conn/functions/getStreamData.ts, whatsapp/enums/StreamMode.ts)
    Member("conn/functions/getStreamData", "StreamData", "mode", "StreamMode", False, "the mode"),
    Member(*_MODES, "QR", '"QR"', False, "unlinked, showing a QR"),
    Member(*_MODES, "MAIN", '"MAIN"', False, "linked and synced: ready"),
    Member(*_MODES, "SYNCING", '"SYNCING"', False, "linked, syncing: not ready yet"),
    Member(*_MODES, "OFFLINE", '"OFFLINE"', False, "no connection: not ready"),
    Member(*_MODES, "CONFLICT", '"CONFLICT"', False, "open elsewhere: not ready"),
    Member(*_MODES, "PROXYBLOCK", '"PROXYBLOCK"', False, "blocked: the worker fails"),
    Member(*_MODES, "TOS_BLOCK", '"TOS_BLOCK"', False, "banned: the worker fails"),
    Member(*_MODES, "SMB_TOS_BLOCK", '"SMB_TOS_BLOCK"', False, "banned: the worker fails"),
    Member(
        *_MODES, "DEPRECATED_VERSION", '"DEPRECATED_VERSION"', False, "too old: the worker fails"
    ),
    # message ids (whatsapp/misc/MsgKey.ts)
    Member(*_KEY, "fromMe", "boolean", False, "the business's side wrote it"),
    Member(*_KEY, "remote", "Wid", False, "the chat"),
    Member(*_KEY, "id", "string", False, "the bare id"),
    Member(*_KEY, "_serialized", "string", False, "the id as the engine stores it"),
    # messages (chat.new_message, getMessageById)
    Member(_MSG, "Props", "id", "MsgKey", False, "dedup key; own replies by id"),
    Member(_MSG, "Props", "body", "string", True, "the text"),
    Member(_MSG, "Props", "type", "string", True, "'chat' is text; 'ciphertext' not yet"),
    Member(_MSG, "Props", "t", "number", True, "when it was sent"),
    Member(_MSG, "Props", "from", "Wid", True, "the sender"),
    Member(_MSG, "Props", "to", "Wid", True, "the recipient"),
    Member(_MSG, "Props", "author", "Wid", True, "the sender in a group"),
    Member(_MSG, "Props", "ack", "ACK", True, "was_sent: >= SENT reached the server"),
    Member(_MSG, "Props", "isNewMsg", "boolean", False, "false: history, not new"),
    Member(_MSG, "Props", "broadcast", "any", True, "broadcast lists are skipped"),
    Member(_MSG, "Derived", "isGroupMsg", "boolean", False, "groups unless answer_groups"),
    Member(_MSG, "Derived", "isStatusV3", "boolean", False, "status updates are skipped"),
    Member(_MSG, "Derived", "isNotification", "boolean", False, "system messages are skipped"),
    Member(*_ACK, "FAILED", "-1", False, "the send failed: send it again"),
    Member(*_ACK, "CLOCK", "0", False, "still on the device: wait"),
    Member(*_ACK, "SENT", "1", False, "the server has it"),
    # LID <-> phone number (contact/functions/getPnLidEntry.ts)
    Member(
        "contact/functions/getPnLidEntry",
        "PnLidEntryResult",
        "phoneNumber",
        "PnLidWid",
        True,
        "the customer's number, when WhatsApp shares it",
    ),
    Member("contact/functions/getPnLidEntry", "PnLidWid", "_serialized", "string", False, "its id"),
    # window.WPPConfig, set before wa-js loads (config/index.ts reads it once)
    Member(*_CONFIG, "deviceName", "string | false", False, "the name under Linked devices"),
    Member(*_CONFIG, "disableGoogleAnalytics", "boolean", False, "true: no analytics (gtag/)"),
    Member(*_CONFIG, "googleAnalyticsId", "string | null", False, "null: no second tracker"),
    Member(*_CONFIG, "linkPreviewApiServers", "string[] | null", False, "[]: no servers"),
    Member(*_CONFIG, "poweredBy", "string | null", False, "null: nothing reported"),
)

#: What wactl sets as ``window.WPPConfig`` before wa-js loads (config/index.ts merges it
#: over config/defaultConfig.ts once, at load). ``deviceName`` is filled in per tenant.
WPP_CONFIG: dict[str, object] = {
    "disableGoogleAnalytics": True,
    "googleAnalyticsId": None,
    "linkPreviewApiServers": [],
    "poweredBy": None,
}

#: The options of every send (see the MEMBERS above for why each).
SEND_OPTIONS: dict[str, object] = {
    "waitForAck": True,
    "markIsRead": False,
    "detectMentioned": False,
    "delay": 0,
    "linkPreview": False,
}

#: The stream mode (whatsapp/enums/StreamMode.ts) of a linked, synced WhatsApp Web.
MODE_READY = "MAIN"
#: Modes in which the account cannot work at all: the worker fails with the reason.
MODES_BLOCKED: dict[str, str] = {
    "TOS_BLOCK": "WhatsApp banned this number (terms of service)",
    "SMB_TOS_BLOCK": "WhatsApp banned this business number (terms of service)",
    "PROXYBLOCK": "WhatsApp blocks the network this host reaches it from",
    "DEPRECATED_VERSION": "WhatsApp Web says this version of it is too old",
}
#: ACK values (whatsapp/enums/ACK.ts): below CLOCK the send failed; SENT and above the
#: server has the message.
ACK_CLOCK = 0
ACK_SENT = 1

# --- derived name lists ---------------------------------------------------------------------

#: ``WPP.<path>`` of every function the bridge calls.
FUNCTION_PATHS: tuple[str, ...] = tuple(f"WPP.{f.path}" for f in FUNCTIONS)
#: ``WPP.<path>`` of every value it reads.
VALUE_PATHS: tuple[str, ...] = tuple(f"WPP.{name}" for name in VALUES)
#: Every event it subscribes to.
EVENT_NAMES: tuple[str, ...] = tuple(e.name for e in EVENTS)
