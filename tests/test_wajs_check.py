"""`wactl.wajs_check`: the contract check of a wa-js package, on real tarballs.

The pinned 4.6.0 tarball (``pinned_tarball``, the real one from npm) passes every
check; a copy with one declaration changed (rebuilt with `rebuild_tarball`, as a new
release would be) reports exactly that change. The parsing helpers are tested on the
shapes the real .d.ts files have: comments, members spanning lines, nested braces.
"""

from __future__ import annotations

import pytest

from tests.wajs_support import (
    CHECKS,
    Member,
    as_version,
    make_tarball,
    rebuild_tarball,
    replace,
)
from wactl import wajs, wajs_api, wajs_check
from wactl.wajs_check import Difference

SEND_TEXT = "dist/chat/functions/sendTextMessage.d.ts"


def test_the_pinned_package_passes_every_check(pinned_tarball: bytes) -> None:
    report = wajs_check.check_package(pinned_tarball, wajs.WAJS_VERSION)
    assert report.differences == ()
    assert report.ok and report.checked == CHECKS
    assert report.summary() == f"@wppconnect/wa-js 4.6.0: all {CHECKS} checks match"
    assert report.as_json() == {
        "package": "@wppconnect/wa-js",
        "version": "4.6.0",
        "ok": True,
        "checked": CHECKS,
        "differences": [],
    }


def test_one_changed_signature_is_reported_exactly(pinned_tarball: bytes) -> None:
    """A release where sendTextMessage's options became required: one line, that one."""
    changed = as_version(
        pinned_tarball,
        "4.7.0",
        {SEND_TEXT: replace("options?: TextMessageOptions", "options: TextMessageOptions")},
    )

    report = wajs_check.check_package(changed, "4.7.0")

    declared = (
        "export declare function sendTextMessage(chatId: any, content: any, "
        "options{}: TextMessageOptions): Promise<SendMessageReturn>;"
    )
    assert report.differences == (
        Difference(
            "function",
            "chat.sendTextMessage",
            SEND_TEXT,
            "differs",
            declared.format("?"),
            declared.format(""),
        ),
    )
    assert report.differences[0].line() == (
        f"function chat.sendTextMessage in {SEND_TEXT}: expected `{declared.format('?')}`, "
        f"found `{declared.format('')}`"
    )
    assert report.summary() == (
        f"@wppconnect/wa-js 4.7.0: 1 of {CHECKS} checks differs from what wactl uses"
    )


def test_comments_and_layout_do_not_count(pinned_tarball: bytes) -> None:
    """Documentation added and a declaration reflowed over lines: still the same."""
    changed = rebuild_tarball(
        pinned_tarball,
        {
            SEND_TEXT: replace(
                "export declare function sendTextMessage(chatId: any, content: any, ",
                "/** Sends a text. // not a line comment */\nexport declare function "
                "sendTextMessage(\n    chatId: any, // the chat\n    content: any,\n    ",
            ),
            "dist/chat/types.d.ts": replace(
                "    waitForAck?: boolean;", "    /** wait */\n    waitForAck?:\n      boolean;"
            ),
        },
    )
    assert wajs_check.check_package(changed, wajs.WAJS_VERSION).ok


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param(
            {
                "dist/conn/events/eventTypes.d.ts": replace(
                    "'conn.logout': undefined;", "'conn.logout': LogoutReason;"
                )
            },
            "event conn.logout in dist/conn/events/eventTypes.d.ts: expected "
            "`'conn.logout': undefined`, found `'conn.logout': LogoutReason`",
            id="event-payload",
        ),
        pytest.param(
            {"dist/whatsapp/enums/StreamMode.d.ts": replace('MAIN = "MAIN",', 'MAIN = "main",')},
            "member StreamMode.MAIN in dist/whatsapp/enums/StreamMode.d.ts: expected "
            '`MAIN = "MAIN"`, found `MAIN = "main"`',
            id="enum-value",
        ),
        pytest.param(
            {"dist/whatsapp/enums/ACK.d.ts": replace("    SENT = 1,\n", "")},
            "member ACK.SENT in dist/whatsapp/enums/ACK.d.ts: missing (expected `SENT = 1`)",
            id="enum-member-gone",
        ),
        pytest.param(
            # MsgKey's constructor options still declare a fromMe: only the class's own
            # (top-level) members count.
            {
                "dist/whatsapp/misc/MsgKey.d.ts": replace(
                    "    fromMe: boolean;\n    id: string;", "    id: string;"
                )
            },
            "member MsgKey.fromMe in dist/whatsapp/misc/MsgKey.d.ts: missing "
            "(expected `fromMe: boolean`)",
            id="nested-members-do-not-count",
        ),
        pytest.param(
            {
                "dist/whatsapp/misc/MsgKey.d.ts": replace(
                    "    remote: Wid;\n    participant",
                    "    readonly remote: Wid;\n    participant",
                )
            },
            "member MsgKey.remote in dist/whatsapp/misc/MsgKey.d.ts: expected `remote: Wid`, "
            "found `readonly remote: Wid`",
            id="modifier",
        ),
        pytest.param(
            # A type over several lines with a nested object type: one member.
            {
                "dist/chat/functions/prepareLinkPreview.d.ts": replace(
                    "        doNotPlayInline: boolean;\n", ""
                )
            },
            "member LinkPreviewOptions.linkPreview in dist/chat/functions/prepareLinkPreview.d.ts:"
            " expected `linkPreview?: boolean | { title?: string; description?: string; "
            "canonicalUrl?: string; matchedText?: string; richPreviewType?: number; thumbnail?: "
            "string; doNotPlayInline: boolean; }`, found `linkPreview?: boolean | { title?: "
            "string; description?: string; canonicalUrl?: string; matchedText?: string; "
            "richPreviewType?: number; thumbnail?: string; }`",
            id="nested-braces",
        ),
        pytest.param(
            {"dist/conn/functions/setKeepAlive.d.ts": None},
            "function conn.setKeepAlive in dist/conn/functions/setKeepAlive.d.ts: file missing "
            "(expected `export declare function setKeepAlive(enable?: boolean): boolean;`)",
            id="file-missing",
        ),
        pytest.param(
            {
                "dist/conn/functions/logout.d.ts": replace(
                    "export declare function logout(): Promise<boolean>;",
                    "export declare const logout: () => Promise<boolean>;",
                )
            },
            "function conn.logout in dist/conn/functions/logout.d.ts: expected `export declare "
            "function logout(): Promise<boolean>;`, found `export declare const logout: () => "
            "Promise<boolean>;`",
            id="function-became-a-const",
        ),
        pytest.param(
            {"dist/index.d.ts": replace(" on, ", " ")},
            "function on in dist/index.d.ts: missing (expected `export { on }`)",
            id="on-not-exported",
        ),
        pytest.param(
            {
                "dist/wppconnect-wa.js": replace(
                    '.emit("conn.require_auth"', '.emit("conn.auth_required"'
                )
            },
            "emit conn.require_auth in dist/wppconnect-wa.js: missing "
            '(expected `.emit("conn.require_auth"`)',
            id="event-not-emitted",
        ),
        pytest.param(
            {"dist/wppconnect-wa.js": replace('.version="4.6.0"', '.version="4.6.1"')},
            "version WPP.version in dist/wppconnect-wa.js: expected `4.6.0`, found `4.6.1`",
            id="bundle-version",
        ),
    ],
)
def test_each_kind_of_change(
    pinned_tarball: bytes, edits: dict[str, object], expected: str
) -> None:
    changed = rebuild_tarball(pinned_tarball, edits)  # type: ignore[arg-type]
    report = wajs_check.check_package(changed, wajs.WAJS_VERSION)
    assert [d.line() for d in report.differences] == [expected]


def test_a_package_without_declarations(pinned_tarball: bytes) -> None:
    """No .d.ts at all (not a wa-js release): every declaration check says file missing."""
    files = wajs_check.read_package(pinned_tarball, ["dist/wppconnect-wa.js"])
    report = wajs_check.check_files(files, wajs.WAJS_VERSION)
    declared = len(wajs_api.FUNCTIONS) + len(wajs_api.EVENTS) + len(wajs_api.MEMBERS)
    assert len(report.differences) == declared
    assert {d.problem for d in report.differences} == {"file missing"}
    assert report.as_json()["differences"][0] == {
        "kind": "function",
        "name": "on",
        "file": "dist/index.d.ts",
        "problem": "file missing",
        "expected": "export { on }",
        "found": None,
    }


def test_only_regular_files_are_read() -> None:
    """A symlink named like a declaration file is not followed: the file is missing."""
    data = make_tarball(
        [
            Member("package/dist/index.d.ts", link="/etc/passwd"),
            Member("package/dist/chat/types.d.ts", b"export interface SendMessageOptions {}\n"),
        ]
    )
    files = wajs_check.read_package(data, ["dist/index.d.ts", "dist/chat/types.d.ts"])
    assert files == {"dist/chat/types.d.ts": "export interface SendMessageOptions {}\n"}


def test_not_a_tarball() -> None:
    with pytest.raises(wajs_check.PackageUnreadableError) as caught:
        wajs_check.check_package(b"<html>not a package</html>", "4.6.0")
    assert caught.value.one_line().startswith("the package is not a readable gzip tarball (")


def test_normalize_keeps_strings_and_drops_comments() -> None:
    source = (
        "/*! header */\nexport interface A {\n    // a line comment\n"
        "    url: 'http://example.com/*x*/';\n    b?: \"//\" | `/*`; /** doc */\n}\n"
    )
    assert wajs_check.normalize(source) == (
        "export interface A { url: 'http://example.com/*x*/'; b?: \"//\" | `/*`; }"
    )


def test_members_of_merged_and_generic_declarations() -> None:
    text = wajs_check.normalize(
        "interface Props { id: MsgKey; }\n"
        "export declare interface Msg extends Proxy<Props, { a: 1; b: 2 }> { x: number; }\n"
        "export declare class Msg extends Model { constructor(o: { y: string; }); y?: string;"
        " get z(): number; }\n"
        'export declare enum E { A = "a", B = -1 }\n'
    )
    assert wajs_check.owner_members(text, "Msg") == [
        "x: number",
        "constructor(o: { y: string; })",
        "y?: string",
        "get z(): number",
    ]
    assert [wajs_check.member_name(m) for m in wajs_check.owner_members(text, "Msg") or []] == [
        "x",
        "constructor",
        "y",
        "z",
    ]
    assert wajs_check.owner_members(text, "E") == ['A = "a"', "B = -1"]
    assert wajs_check.owner_members(text, "Missing") is None
