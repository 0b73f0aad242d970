"""`wactl engine check`: does a wa-js package still declare what wactl uses?

Why this module exists: an operator may move tenants to a wa-js version wactl was not
released with (`wactl engine install --version V`). Before any tenant runs it, its own
type declarations (``dist/**/*.d.ts`` in the npm tarball) and its bundle are compared
with the one definition of what the engine uses, `wactl.wajs_api`:

- each `Function`: its ``declarations``, in order, are the ``declare function``
  statements of that name in ``dist/<module>.d.ts``; a function without declarations
  (``on``, a bound EventEmitter method) must be exported from ``dist/index.d.ts``;
- each `Event`: the member ``'<name>': <payload>`` of ``interface <interface>``;
- each `Member`: ``Member.declaration`` is a member of the top-level body of its owner
  (interface, class or enum; members of nested object types do not count);
- the bundle emits every event (``.emit("name"``) and says it is version V.

Comments are removed and whitespace collapsed before comparing (and a space next to
punctuation does not count), so only a change of the declared text counts. Everything
here is a pure function of the tarball's bytes, already verified by the caller
(`wactl.wajs.read_tarball`): nothing is written and nothing outside the stdlib is
imported.

What it must not do: execute or write anything from the package, or trust its sizes
(members are read with limits, in memory).
"""

from __future__ import annotations

import io
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from wactl import wajs_api
from wactl.errors import WactlError
from wactl.wajs import WAJS_PACKAGE

#: Where npm tarballs put the package, and the package's declarations and bundle.
PACKAGE_DIR = "package/dist/"
BUNDLE_FILE = "wppconnect-wa.js"
INDEX_MODULE = "index"
#: Refuse to read more than this out of one tarball (4.6.0: 0.5 MB bundle, 3 MB of .d.ts).
MAX_READ_BYTES = 128 * 1024 * 1024

Problem = Literal["differs", "missing", "file missing"]


class PackageUnreadableError(WactlError):
    """The tarball cannot be read as an npm package (exit code 1)."""


@dataclass(frozen=True)
class Difference:
    """One item of the contract that the package does not declare as wactl expects."""

    #: "function", "event", "member", "emit" or "version".
    kind: str
    #: What it is: ``chat.sendTextMessage``, ``conn.logout``, ``SendMessageOptions.delay``.
    name: str
    #: The file it was looked for in, relative to the package (``dist/chat/types.d.ts``).
    file: str
    problem: Problem
    expected: str
    #: What the package declares instead (None when missing).
    found: str | None = None

    def line(self) -> str:
        """One line for people: what, where, and expected against found."""
        where = f"{self.kind} {self.name} in {self.file}"
        if self.problem == "differs":
            return f"{where}: expected `{self.expected}`, found `{self.found}`"
        return f"{where}: {self.problem} (expected `{self.expected}`)"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "file": self.file,
            "problem": self.problem,
            "expected": self.expected,
            "found": self.found,
        }


@dataclass(frozen=True)
class CheckReport:
    """What `check_package` found: how many items were checked and which differ."""

    version: str
    checked: int
    differences: tuple[Difference, ...]

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        """``@wppconnect/wa-js 4.6.0: all 70 checks match`` or how many differ."""
        head = f"{WAJS_PACKAGE} {self.version}"
        if self.ok:
            return f"{head}: all {self.checked} checks match"
        count = len(self.differences)
        verb = "differs" if count == 1 else "differ"
        return f"{head}: {count} of {self.checked} checks {verb} from what wactl uses"

    def as_json(self) -> dict[str, Any]:
        """The stable `wactl engine check --json` object (keys in wactl(1))."""
        return {
            "package": WAJS_PACKAGE,
            "version": self.version,
            "ok": self.ok,
            "checked": self.checked,
            "differences": [d.as_json() for d in self.differences],
        }


# --- reading the package ------------------------------------------------------------------


def declaration_file(module: str) -> str:
    """``chat/types`` -> ``dist/chat/types.d.ts`` (as the report names it)."""
    return f"dist/{module}.d.ts"


def contract_files() -> set[str]:
    """Every file the checks read, relative to the package."""
    modules = {f.module for f in wajs_api.FUNCTIONS if f.declarations}
    modules |= {e.module for e in wajs_api.EVENTS} | {m.module for m in wajs_api.MEMBERS}
    modules.add(INDEX_MODULE)
    return {declaration_file(m) for m in modules} | {f"dist/{BUNDLE_FILE}"}


def read_package(data: bytes, wanted: Iterable[str]) -> dict[str, str]:
    """The ``wanted`` files (relative to the package) present in the gzip tarball, as text.

    Only regular files are read, in memory, up to `MAX_READ_BYTES` in all; a file the
    tarball does not hold is simply absent from the result.
    """
    names = {f"package/{name}": name for name in wanted}
    found: dict[str, str] = {}
    budget = MAX_READ_BYTES
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                name = names.get(member.name)
                if name is None or not member.isfile() or name in found:
                    continue
                if member.size > budget:
                    raise PackageUnreadableError(
                        f"the package's {name} is larger than the {MAX_READ_BYTES} bytes "
                        "wactl reads from a package"
                    )
                handle = archive.extractfile(member)
                assert handle is not None, "a regular file member always has a file object"
                with handle:
                    content = handle.read(member.size)
                budget -= len(content)
                found[name] = content.decode("utf-8", errors="replace")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise PackageUnreadableError(f"the package is not a readable gzip tarball ({exc})") from exc
    return found


# --- TypeScript declarations, as text --------------------------------------------------------

_COMMENT_OR_STRING = re.compile(
    r"""('(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"|`(?:\\.|[^`\\])*`)|/\*.*?\*/|//[^\n]*""",
    re.DOTALL,
)


def normalize(source: str) -> str:
    """Comments removed (not inside strings) and every run of whitespace one space."""
    bare = _COMMENT_OR_STRING.sub(lambda m: m.group(1) or " ", source)
    return " ".join(bare.split())


_SPACED_PUNCTUATION = re.compile(r"\s*([^\w\s$])\s*")


def same(declared: str, expected: str) -> bool:
    """Equal as TypeScript tokens: a space next to punctuation (``f( a: T )``, a line
    broken after ``(``) does not matter; one between two words does."""
    return _SPACED_PUNCTUATION.sub(r"\1", declared) == _SPACED_PUNCTUATION.sub(r"\1", expected)


def _skip_string(text: str, start: int) -> int:
    """The index after the string literal that starts at ``start``."""
    quote = text[start]
    index = start + 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == quote:
            return index + 1
        index += 1
    return len(text)


def _outside_strings(text: str, start: int) -> Iterator[int]:
    """The indexes of ``text`` from ``start`` that are not inside a string literal."""
    index = start
    while index < len(text):
        if text[index] in "'\"`":
            index = _skip_string(text, index)
            continue
        yield index
        index += 1


def _scan(text: str, start: int, stops: str) -> int:
    """The index of the first character of ``stops`` outside brackets and strings,
    from ``start``; a closing bracket with no opening one also ends the scan."""
    depth = 0
    for index in _outside_strings(text, start):
        char = text[index]
        if depth == 0 and char in stops:
            return index
        if char in "{([":
            depth += 1
        elif char in "})]":
            if depth == 0:
                return index
            depth -= 1
    return len(text)


def _body_start(text: str, start: int) -> int | None:
    """The ``{`` opening a declaration's body after its name: outside ``<...>`` type
    arguments and parentheses (``extends Base<{ a: string }>`` has braces of its own)."""
    angle = paren = 0
    for index in _outside_strings(text, start):
        char = text[index]
        if char == "<":
            angle += 1
        elif char == ">" and text[index - 1] != "=":
            angle -= 1
        elif char == "(":
            paren += 1
        elif char == ")":
            paren -= 1
        elif char == "{" and angle == 0 and paren == 0:
            return index
        elif char == ";" and angle == 0 and paren == 0:
            return None  # a declaration without a body (`declare class X;`)
    return None


def _owner_pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        r"(?:^|(?<=[\s;{}]))(?:export )?(?:default )?(?:declare )?(?:abstract )?(?:const )?"
        rf"(interface|class|enum) {re.escape(name)}(?=[\s<{{])"
    )


def owner_members(text: str, owner: str) -> list[str] | None:
    """The members of every top-level body of the interface, class or enum ``owner``
    in a normalized file (declarations merge), each without its ``;`` or ``,``.
    None when the file declares no such owner."""
    members: list[str] | None = None
    for match in _owner_pattern(owner).finditer(text):
        opening = _body_start(text, match.end())
        if opening is None:
            continue
        closing = _scan(text, opening + 1, "}")
        body = text[opening + 1 : closing]
        separator = "," if match.group(1) == "enum" else ";"
        members = members or []
        position = 0
        while position < len(body):
            end = _scan(body, position, separator)
            member = body[position:end].strip()
            if member:
                members.append(member)
            position = end + 1
    return members


_MODIFIER = re.compile(
    r"(?:readonly|static|public|private|protected|declare|abstract|override|accessor|get|set)"
    r" (?=[\w$#'\"])"
)
_IDENTIFIER = re.compile(r"[\w$#]+")


def member_name(member: str) -> str | None:
    """The name a member declares (quotes removed); None for index signatures."""
    rest = member
    while (modifier := _MODIFIER.match(rest)) is not None:
        rest = rest[modifier.end() :]
    if rest[:1] in ("'", '"'):
        end = _skip_string(rest, 0)
        return rest[1 : end - 1]
    identifier = _IDENTIFIER.match(rest)
    return identifier.group() if identifier else None


def member_rest(member: str) -> str:
    """What follows a member's name: ``?: boolean``, ``: undefined``, ``= "QR"``."""
    name = member_name(member)
    if name is None:
        return member
    index = member.find(name)
    if member[index - 1 : index] in ("'", '"'):
        index += 1  # past the closing quote
    return member[index + len(name) :].strip()


def function_declarations(text: str, name: str) -> list[str]:
    """Every ``declare function name`` statement (overloads in order) of a normalized
    file; failing those, any other top-level declaration of ``name`` (a const, class)."""
    functions = re.compile(
        rf"(?:^|(?<=[\s;{{}}]))(?:export )?(?:declare )?function {re.escape(name)}(?=[\s(<])"
    )
    found = [text[m.start() : _scan(text, m.start(), ";") + 1] for m in functions.finditer(text)]
    if found:
        return found
    others = re.compile(
        rf"(?:^|(?<=[\s;{{}}]))(?:export )?declare (?:const|let|var|class|enum) "
        rf"{re.escape(name)}(?=[\s:<{{=])"
    )
    return [text[m.start() : _scan(text, m.start(), ";") + 1] for m in others.finditer(text)]


_EXPORT_LIST = re.compile(r"export (?:type )?\{([^}]*)\}")
_EXPORT_DECLARED = re.compile(
    r"export (?:declare )?(?:const|let|var|function|class|enum|namespace|interface|type) "
    r"([\w$]+)"
)
_EXPORT_NAMESPACE = re.compile(r"export \* as ([\w$]+)")


def exported_names(text: str) -> set[str]:
    """The names a normalized file exports (``export {a, b as c}``, declarations, ``* as``)."""
    names: set[str] = set()
    for match in _EXPORT_LIST.finditer(text):
        for item in match.group(1).split(","):
            words = item.split()
            if words and words[0] == "type":
                words = words[1:]
            if words:
                names.add(words[-1])  # "a as b" exports b
    names.update(m.group(1) for m in _EXPORT_DECLARED.finditer(text))
    names.update(m.group(1) for m in _EXPORT_NAMESPACE.finditer(text))
    return names


_EMIT = re.compile(r'\.emit\("([a-z_]+\.[a-z_]+)"')
_VERSION = re.compile(r'\.version="([^"\\]*)"')


def emitted_events(bundle: str) -> set[str]:
    """The event names the bundle emits (``.emit("conn.main_ready"``)."""
    return set(_EMIT.findall(bundle))


def bundle_versions(bundle: str) -> set[str]:
    """The version strings the bundle assigns (``t.version="4.6.0"``: what WPP.version is)."""
    return set(_VERSION.findall(bundle))


# --- the checks -----------------------------------------------------------------------------


def _check_function(function: wajs_api.Function, files: Mapping[str, str]) -> Difference | None:
    if not function.declarations:
        # A bound EventEmitter method: declared as a const with overloads; what matters
        # is that WPP exports it.
        file = declaration_file(INDEX_MODULE)
        exported = function.path.split(".")[0]
        expected = f"export {{ {exported} }}"
        if file not in files:
            return Difference("function", function.path, file, "file missing", expected)
        if exported in exported_names(files[file]):
            return None
        return Difference("function", function.path, file, "missing", expected)
    file = declaration_file(function.module)
    expected = " ".join(function.declarations)
    if file not in files:
        return Difference("function", function.path, file, "file missing", expected)
    found = function_declarations(files[file], function.name)
    if len(found) == len(function.declarations) and all(
        same(a, b) for a, b in zip(found, function.declarations, strict=True)
    ):
        return None
    if not found:
        return Difference("function", function.path, file, "missing", expected)
    return Difference("function", function.path, file, "differs", expected, " ".join(found))


def _check_owned(
    kind: str,
    name: str,
    module: str,
    owner: str,
    member: str,
    expected: str,
    matches: Callable[[str], bool],
    files: Mapping[str, str],
) -> Difference | None:
    """The member called ``member`` of ``owner``'s body, compared with ``matches``."""
    file = declaration_file(module)
    if file not in files:
        return Difference(kind, name, file, "file missing", expected)
    candidates = [m for m in owner_members(files[file], owner) or [] if member_name(m) == member]
    if any(matches(m) for m in candidates):
        return None
    if not candidates:
        return Difference(kind, name, file, "missing", expected)
    return Difference(kind, name, file, "differs", expected, candidates[0])


def _check_event(event: wajs_api.Event, files: Mapping[str, str]) -> Difference | None:
    # The key's quotes are the compiler's choice; the payload type is what counts.
    payload = f": {event.payload}"
    return _check_owned(
        "event",
        event.name,
        event.module,
        event.interface,
        event.name,
        f"'{event.name}'{payload}",
        lambda found: same(member_rest(found), payload),
        files,
    )


def _check_member(member: wajs_api.Member, files: Mapping[str, str]) -> Difference | None:
    expected = member.declaration
    return _check_owned(
        "member",
        f"{member.owner}.{member.name}",
        member.module,
        member.owner,
        member.name,
        expected,
        lambda found: same(found, expected),
        files,
    )


def _check_bundle(bundle: str | None, version: str) -> list[Difference | None]:
    """Every event emitted, and the version the bundle reports."""
    file = f"dist/{BUNDLE_FILE}"
    results: list[Difference | None] = []
    emitted = emitted_events(bundle) if bundle is not None else set()
    for event in wajs_api.EVENT_NAMES:
        expected = f'.emit("{event}"'
        if bundle is None:
            results.append(Difference("emit", event, file, "file missing", expected))
        else:
            missing = event not in emitted
            results.append(
                Difference("emit", event, file, "missing", expected) if missing else None
            )
    versions = bundle_versions(bundle) if bundle is not None else set()
    if versions == {version}:
        results.append(None)
    elif bundle is None or not versions:
        problem: Problem = "file missing" if bundle is None else "missing"
        results.append(Difference("version", "WPP.version", file, problem, version))
    else:
        found = ", ".join(sorted(versions))
        results.append(Difference("version", "WPP.version", file, "differs", version, found))
    return results


def check_files(files: Mapping[str, str], version: str) -> CheckReport:
    """Every check of the contract against the package's files (path -> text)."""
    normalized = {
        path: normalize(text) if path.endswith(".d.ts") else text for path, text in files.items()
    }
    results: list[Difference | None] = []
    results += [_check_function(f, normalized) for f in wajs_api.FUNCTIONS]
    results += [_check_event(e, normalized) for e in wajs_api.EVENTS]
    results += [_check_member(m, normalized) for m in wajs_api.MEMBERS]
    results += _check_bundle(normalized.get(f"dist/{BUNDLE_FILE}"), version)
    return CheckReport(
        version=version,
        checked=len(results),
        differences=tuple(r for r in results if r is not None),
    )


def check_package(data: bytes, version: str) -> CheckReport:
    """`check_files` on the files of the (verified) gzip tarball ``data``."""
    return check_files(read_package(data, contract_files()), version)
