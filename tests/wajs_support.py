"""Test helpers for wa-js: tarballs built by the test, a real npm registry on loopback.

`LoopbackRegistry` is a real HTTP server (in a thread, on 127.0.0.1, an ephemeral port)
that answers what npm and `wactl.wajs.fetch_over_https` ask an npm registry for one
package: the packument (``/@scope%2fname``) and the tarballs
(``/@scope/name/-/name-VERSION.tgz``). It can cut a download short, and it records
every request so tests can see whether anything was fetched.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from tests.support import serving
from wactl import wajs, wajs_api

#: A version no real registry has, so a test can never fetch the real package by mistake.
TEST_VERSION = "0.0.0-wactl-test"

#: How many checks `wactl engine check` runs: one per function, event and member of the
#: contract (wactl.wajs_api), one per event the bundle must emit, and its version.
CHECKS = (
    len(wajs_api.FUNCTIONS)
    + len(wajs_api.EVENTS)
    + len(wajs_api.MEMBERS)
    + len(wajs_api.EVENT_NAMES)
    + 1
)

#: What a bundle built by the tests holds: enough JavaScript to be recognisable.
BUNDLE = b"/*! wactl test bundle */ window.WPP = {version: '0.0.0-wactl-test'};\n"


@dataclass(frozen=True)
class Member:
    """One tarball entry: a file (``data``), or a symlink (``link``) when ``link`` is set."""

    name: str
    data: bytes = b""
    link: str | None = None


def make_tarball(members: list[Member]) -> bytes:
    """A gzip tarball of ``members``, as npm pack would lay it out (or not)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.mode = 0o644
            if member.link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = member.link
                archive.addfile(info)
            else:
                info.size = len(member.data)
                archive.addfile(info, io.BytesIO(member.data))
    return buffer.getvalue()


def good_tarball(bundle: bytes = BUNDLE) -> bytes:
    return make_tarball(
        [
            Member("package/package.json", b'{"name": "@wppconnect/wa-js"}'),
            Member(wajs.BUNDLE_MEMBER, bundle),
            Member("package/dist/index.d.ts", b"export {};\n"),
        ]
    )


def pin_for(data: bytes, version: str = TEST_VERSION) -> wajs.Pin:
    """A pin whose integrity is that of ``data`` (the test's own "release")."""
    return wajs.Pin(wajs.WAJS_PACKAGE, version, wajs.integrity_of(data))


@dataclass
class LoopbackRegistry:
    """An npm registry for `wajs.WAJS_PACKAGE` on 127.0.0.1 (see the module docstring)."""

    url: str = ""
    #: version -> tarball bytes it serves.
    tarballs: dict[str, bytes] = field(default_factory=dict)
    #: Send the full Content-Length but only this many bytes of each tarball.
    cut_after: int | None = None
    #: Paths of every GET, in order.
    requests: list[str] = field(default_factory=list)

    def publish(self, version: str, data: bytes) -> None:
        self.tarballs[version] = data

    def tarball_requests(self) -> list[str]:
        return [path for path in self.requests if path.endswith(".tgz")]

    def packument(self) -> dict[str, object]:
        name = wajs.WAJS_PACKAGE
        basename = name.rpartition("/")[2]
        versions = {
            version: {
                "name": name,
                "version": version,
                "dist": {
                    "tarball": f"{self.url}/{name}/-/{basename}-{version}.tgz",
                    "integrity": wajs.integrity_of(data),
                },
            }
            for version, data in self.tarballs.items()
        }
        latest = max(self.tarballs, default=TEST_VERSION)
        return {"name": name, "dist-tags": {"latest": latest}, "versions": versions}


def _handler(registry: LoopbackRegistry) -> type[BaseHTTPRequestHandler]:
    name = wajs.WAJS_PACKAGE
    basename = name.rpartition("/")[2]
    tarball_prefix = f"/{name}/-/{basename}-"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            registry.requests.append(path)
            if unquote(path).lower() == f"/{name}":
                self._send(json.dumps(registry.packument()).encode(), "application/json")
            elif path.startswith(tarball_prefix) and path.endswith(".tgz"):
                version = path[len(tarball_prefix) : -len(".tgz")]
                data = registry.tarballs.get(version)
                if data is None:
                    self._send(b'{"error": "not found"}', "application/json", status=404)
                else:
                    self._send(data, "application/octet-stream", cut=registry.cut_after)
            else:
                self._send(b'{"error": "not found"}', "application/json", status=404)

        def _send(
            self, body: bytes, content_type: str, *, status: int = 200, cut: int | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body if cut is None else body[:cut])
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    return Handler


@contextmanager
def loopback_registry() -> Iterator[LoopbackRegistry]:
    """A running `LoopbackRegistry`; the server is shut down and joined afterwards."""
    registry = LoopbackRegistry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(registry))
    server.daemon_threads = True
    registry.url = f"http://127.0.0.1:{server.server_address[1]}"
    with serving(server, "loopback-registry"):
        yield registry


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for directories), to compare states."""
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): (None if path.is_dir() else path.read_bytes())
        for path in sorted(root.rglob("*"))
    }


def rebuild_tarball(data: bytes, edits: Mapping[str, Callable[[bytes], bytes] | None]) -> bytes:
    """``data`` (a package tarball) with the members named in ``edits`` (relative to
    ``package/``) rewritten by their function, or removed (None); the rest as it was."""
    members: list[Member] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for info in archive.getmembers():
            if not info.isfile():
                continue
            name = info.name.removeprefix("package/")
            handle = archive.extractfile(info)
            assert handle is not None
            content = handle.read()
            if name in edits:
                edit = edits[name]
                if edit is None:
                    continue
                content = edit(content)
            members.append(Member(info.name, content))
    return make_tarball(members)


def replace(old: str, new: str) -> Callable[[bytes], bytes]:
    """An edit for `rebuild_tarball`: ``old`` (which must be there) becomes ``new``."""

    def edit(content: bytes) -> bytes:
        assert old.encode() in content, f"{old!r} is not in the member"
        return content.replace(old.encode(), new.encode())

    return edit


def as_version(
    data: bytes,
    version: str,
    edits: Mapping[str, Callable[[bytes], bytes] | None] | None = None,
) -> bytes:
    """The pinned tarball ``data`` made into release ``version``: its bundle reports that
    version (``WPP.version``) and so does package.json; ``edits`` as `rebuild_tarball`."""
    pinned = wajs.WAJS_VERSION
    changes: dict[str, Callable[[bytes], bytes] | None] = {
        "dist/wppconnect-wa.js": replace(f'.version="{pinned}"', f'.version="{version}"'),
        "package.json": replace(f'"version": "{pinned}"', f'"version": "{version}"'),
        **(edits or {}),
    }
    return rebuild_tarball(data, changes)
