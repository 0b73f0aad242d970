"""The portal's pages and JSON endpoints.

Every handler that shows or changes tenant data starts from the signed-in user
(`_owner`), loaded from the session's user id, and checked against the allowed email
domains on every request; the tenant is the user's, never one named in the request.
Every value read from the request is checked before use (`_whole_number`, `_search`,
`_parse_json`, `forms`): bad input is a 4xx naming what is wrong, never a 500.
Database work runs in Starlette's thread pool (`Portal.db`), one transaction per call.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from wactl import validation
from wactl.db import portal as store
from wactl.db import requests as setup_requests
from wactl.db.engine import session_scope
from wactl.enums import Direction
from wactl.errors import ConflictError, NotFoundError, ValidationError
from wactl.portal import forms
from wactl.portal.auth import Identity, SignInError, setup_instructions, sha256
from wactl.portal.security import CSRF_FIELD, CSRF_HEADER, csrf_token, csrf_valid, local_path
from wactl.portal.views import Owner

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from starlette.templating import Jinja2Templates

    from wactl.config import Config
    from wactl.portal.auth import OidcSignIn
    from wactl.portal.security import RateLimits

log = logging.getLogger("wactl.portal")
T = TypeVar("T")

#: How deep a JSON body may nest; a setup request has three levels (the object, its
#: ``hours`` table, each day's list).
MAX_JSON_DEPTH = 20

_USER_KEY = "uid"
#: The user's session generation at sign-in (`User.session_generation`); a cookie from
#: before the last sign-out carries an older one and signs nobody in.
_GENERATION_KEY = "gen"
_NEXT_KEY = "next"


class Portal:
    """What the handlers share; stored as ``app.state.portal``."""

    def __init__(
        self,
        *,
        config: Config,
        engine: Engine,
        auth: OidcSignIn,
        templates: Jinja2Templates,
        signin_limits: RateLimits,
        post_limits: RateLimits,
    ) -> None:
        self.config = config
        self.engine = engine
        self.auth = auth
        self.templates = templates
        self.signin_limits = signin_limits
        self.post_limits = post_limits
        self.public_base_url = config.portal.public_base_url.rstrip("/")

    async def db(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction, in a worker thread (SQLAlchemy is blocking)."""
        return await run_in_threadpool(self._in_session, work)

    def _in_session(self, work: Callable[[Session], T]) -> T:
        with session_scope(self.engine) as session:
            return work(session)

    def redirect_uri(self, request: Request) -> str:
        base = self.public_base_url or str(request.base_url).rstrip("/")
        return f"{base}/auth/callback"


def _portal(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --- rendering -------------------------------------------------------------------------


def render(
    request: Request,
    template: str,
    *,
    owner: Owner | None = None,
    status: int = 200,
    **context: Any,
) -> Response:
    portal = _portal(request)
    context.update(
        owner=owner,
        csrf_field=CSRF_FIELD,
        csrf_token=csrf_token(request.session) if owner is not None else "",
        path=request.url.path,
    )
    return portal.templates.TemplateResponse(request, template, context, status_code=status)


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    """An error as a page (or as JSON under /api/), never with internal details."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return render(request, "error.html", status=status, title=title, message=message)


def _too_many(request: Request, wait: float, what: str) -> Response:
    seconds = int(wait)
    response = error_page(
        request,
        429,
        "Too many attempts",
        f"Too many {what} in a short time. Please wait {seconds} seconds and try again.",
    )
    response.headers["Retry-After"] = str(seconds)
    return response


# --- who is signed in --------------------------------------------------------------------


def _load_owner(user_id: str, generation: int) -> Callable[[Session], Owner | None]:
    def work(session: Session) -> Owner | None:
        user = store.load_user(session, user_id)
        if user is None or user.session_generation != generation:
            return None
        return Owner.of(user, store.latest_request(session, user.tenant_id))

    return work


def _signed_in_as(request: Request) -> tuple[str, int] | None:
    """The user id and session generation the cookie carries (a cookie from before
    generations existed is generation 0)."""
    user_id = request.session.get(_USER_KEY)
    generation = request.session.get(_GENERATION_KEY, 0)
    if not isinstance(user_id, str) or not isinstance(generation, int):
        return None
    return user_id, generation


def _check_domain(request: Request, owner: Owner) -> None:
    """Sign the owner out, with the page that says why, when their email's domain is
    not allowed (any more: `portal.allowed_email_domains` may have been narrowed since
    they signed in)."""
    refusal = _portal(request).auth.domain_refusal(owner.email)
    if refusal is not None:
        request.session.clear()
        raise refusal


async def _owner(request: Request) -> Owner | None:
    signed_in = _signed_in_as(request)
    if signed_in is None:
        return None
    owner = await _portal(request).db(_load_owner(*signed_in))
    if owner is None:  # the user was deleted (with their tenant), or signed out elsewhere
        request.session.clear()
    else:
        _check_domain(request, owner)
    return owner


async def _owner_and(
    request: Request, work: Callable[[Session, Owner], T]
) -> tuple[Owner | None, T | None]:
    """The signed-in owner and ``work`` for them, in one transaction (one thread hop)."""
    signed_in = _signed_in_as(request)
    if signed_in is None:
        return None, None
    load = _load_owner(*signed_in)
    allowed = _portal(request).auth.domain_refusal

    def both(session: Session) -> tuple[Owner | None, T | None]:
        owner = load(session)
        if owner is None or allowed(owner.email) is not None:
            return owner, None
        return owner, work(session, owner)

    owner, result = await _portal(request).db(both)
    if owner is None:
        request.session.clear()
    else:
        _check_domain(request, owner)
    return owner, result


def _sign_in_redirect(request: Request) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse(
            {"error": "not signed in", "hint": "sign in at /signin first"}, status_code=401
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    from urllib.parse import quote

    return RedirectResponse(f"/signin?next={quote(target, safe='/')}", status_code=303)


async def _checked_post(request: Request, owner: Owner, sent_token: object) -> Response | None:
    """The rate limit and CSRF check of a post; a response when it is refused."""
    wait = _portal(request).post_limits.take(str(owner.user_id))
    if wait:
        return _too_many(request, wait, "changes")
    if not csrf_valid(request.session, sent_token):
        return error_page(
            request,
            403,
            "This form has expired",
            "The form was not sent from this portal, or your session changed since it "
            "was shown. Go back, reload the page and send it again.",
        )
    return None


# --- sign-in ------------------------------------------------------------------------------


async def signin_page(request: Request) -> Response:
    if await _owner(request) is not None:
        return RedirectResponse(local_path(request.query_params.get("next")), status_code=303)
    return _signin(request)


def _signin(request: Request) -> Response:
    portal = _portal(request)
    next_path = local_path(request.query_params.get("next"))
    instructions = None
    if not portal.auth.configured:
        instructions = setup_instructions(portal.redirect_uri(request))
    return render(
        request,
        "signin.html",
        next_path=next_path if next_path != "/" else None,
        instructions=instructions,
    )


def _signin_refused(request: Request) -> Response | None:
    """Where a sign-in step must not go on: no provider configured, or this address is
    over its sign-in rate limit."""
    portal = _portal(request)
    if not portal.auth.configured:
        return RedirectResponse("/signin", status_code=303)
    wait = portal.signin_limits.take(_client_address(request))
    if wait:
        return _too_many(request, wait, "sign-in attempts")
    return None


async def auth_start(request: Request) -> Response:
    if (refused := _signin_refused(request)) is not None:
        return refused
    portal = _portal(request)
    request.session[_NEXT_KEY] = local_path(request.query_params.get("next"))
    # State and nonce are also kept in the database, where the callback uses them up:
    # the cookie alone would let a copy of it replay the sign-in.
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    await portal.db(
        lambda session: store.start_signin(
            session, state_sha256=sha256(state), nonce_sha256=sha256(nonce)
        )
    )
    try:
        return await portal.auth.redirect(
            request, portal.redirect_uri(request), state=state, nonce=nonce
        )
    except SignInError as exc:
        return error_page(request, exc.status, exc.title, exc.message)


async def auth_callback(request: Request) -> Response:
    if (refused := _signin_refused(request)) is not None:
        return refused
    portal = _portal(request)
    try:
        identity = await _verified_identity(request, portal)
        signed = await _sign_in_with_retry(portal, identity)
    except SignInError as exc:
        log.info("sign-in refused: %s", exc.message)
        return error_page(request, exc.status, exc.title, exc.message)
    next_path = local_path(request.session.get(_NEXT_KEY))
    # A new session for the signed-in owner: nothing from before sign-in is carried
    # over (session fixation), and a fresh CSRF token.
    request.session.clear()
    request.session[_USER_KEY] = str(signed.user_id)
    request.session[_GENERATION_KEY] = signed.generation
    csrf_token(request.session)
    log.info(
        "signed in %s (tenant '%s'%s)", signed.email, signed.slug, ", new" if signed.created else ""
    )
    return RedirectResponse(next_path, status_code=303)


async def _verified_identity(request: Request, portal: Portal) -> Identity:
    """Who the provider says signed in, once this browser's state was used up in the
    database (by this process or any other on it: a replay finds it gone)."""
    refusal = portal.auth.provider_refusal(request)
    if refusal is not None:
        raise refusal
    state = portal.auth.callback_state(request)
    nonce_sha256 = await portal.db(
        lambda session: store.use_signin(session, state_sha256=sha256(state))
    )
    if nonce_sha256 is None:
        raise SignInError(
            "This sign-in link was already used",
            "This sign-in was already completed, or it was started too long ago "
            f"(more than {int(store.SIGNIN_WINDOW.total_seconds()) // 60} minutes). "
            "Please start again.",
        )
    return await portal.auth.finish(request, nonce_sha256=nonce_sha256)


async def _sign_in_with_retry(portal: Portal, identity: Identity) -> store.SignIn:
    from sqlalchemy.exc import IntegrityError

    from wactl.enums import EngineName

    engine = EngineName(portal.config.defaults.engine)
    for attempt in range(3):
        try:
            return await portal.db(
                lambda session: store.sign_in(
                    session,
                    issuer=identity.issuer,
                    subject=identity.subject,
                    email=identity.email,
                    name=identity.name,
                    engine=engine,
                )
            )
        except store.AccountMismatchError as exc:
            await _refuse_other_account(portal, identity, exc)
        except IntegrityError:
            # A concurrent first sign-in took this identity, email or slug; the next
            # try sees it.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _refuse_other_account(
    portal: Portal, identity: Identity, refused: store.AccountMismatchError
) -> NoReturn:
    """Audit the refusal (its own transaction: the sign-in's was rolled back) and say
    why on the page."""
    await portal.db(
        lambda session: store.record_refused_sign_in(
            session, refused, issuer=identity.issuer, subject=identity.subject
        )
    )
    log.warning(
        "sign-in refused: %s is bound to another identity than %s at %s",
        identity.email,
        identity.subject,
        identity.issuer,
    )
    raise SignInError(
        "This email belongs to another account",
        f"The portal account of {identity.email} was opened with another account at the "
        "sign-in service than the one you used now, so you were not signed in. Sign in "
        "with the account you used before; if you no longer can, ask the operator.",
        status=403,
    )


async def signout(request: Request) -> Response:
    owner = await _owner(request)
    if owner is None:
        return RedirectResponse("/signin", status_code=303)
    async with request.form() as form:
        refused = await _checked_post(request, owner, form.get(CSRF_FIELD))
    if refused is not None:
        return refused

    def sign_out(session: Session) -> None:
        user = store.load_user(session, str(owner.user_id))
        if user is not None:
            store.sign_out(session, user)

    await _portal(request).db(sign_out)
    request.session.clear()
    return RedirectResponse("/signin", status_code=303)


# --- pages -----------------------------------------------------------------------------------


async def dashboard(request: Request) -> Response:
    owner = await _owner(request)
    if owner is None:
        return _signin(request)
    return render(request, "dashboard.html", owner=owner, headline=owner.headline)


def _setup_form_page(
    request: Request, owner: Owner, form: forms.SetupForm, *, status: int = 200
) -> Response:
    portal = _portal(request)
    return render(
        request,
        "setup.html",
        owner=owner,
        form=form,
        status=status,
        templates_choices=forms.TEMPLATE_LABELS,
        language_choices=forms.LANGUAGE_LABELS,
        days=forms.DAY_LABELS,
        timezones=forms.timezones(),
        default_timezone=portal.config.defaults.timezone,
    )


async def setup_page(request: Request) -> Response:
    owner = await _owner(request)
    if owner is None:
        return _sign_in_redirect(request)
    form = forms.SetupForm()
    request_view = owner.request
    if request_view is not None:
        # A rejected request is the starting point of the corrected one.
        form.values.update(
            business_name=request_view.business_name,
            template_type=request_view.template_type,
            language=request_view.language,
            whatsapp_number=request_view.whatsapp_number,
            timezone=request_view.timezone,
            notes=request_view.notes or "",
        )
        for day, ranges in request_view.hours.items():
            form.values[f"hours_{day}"] = ", ".join(ranges)
    else:
        defaults = _portal(request).config.defaults
        form.values.update(
            template_type=defaults.template,
            language=defaults.language,
            timezone=defaults.timezone,
        )
    return _setup_form_page(request, owner, form)


def _submit(owner: Owner, form: forms.SetupForm) -> Callable[[Session], int]:
    clean = form.clean

    def work(session: Session) -> int:
        user = store.load_user(session, str(owner.user_id))
        if user is None:
            raise NotFoundError("you are signed out")
        request = setup_requests.submit_request(
            session,
            user.tenant,
            actor=store.portal_actor(user.email),
            business_name=clean["business_name"],
            template=clean["template"].value,
            language=clean["language"].value,
            whatsapp_number=clean["whatsapp_number"],
            timezone=clean["timezone"],
            weekly_hours=clean["weekly_hours"],
            notes=clean["notes"],
            user_id=user.id,
        )
        return request.id

    return work


_NOT_NOW = (
    "Your bot is already set up or your request is waiting for the operator; "
    "a new request can be sent only before setup or after a request was declined."
)


async def setup_submit(request: Request) -> Response:
    owner = await _owner(request)
    if owner is None:
        return _sign_in_redirect(request)
    async with request.form() as data:
        refused = await _checked_post(request, owner, data.get(CSRF_FIELD))
        if refused is not None:
            return refused
        form = forms.read_setup({key: data.get(key) for key in data})
    if not owner.can_request_setup:
        return error_page(request, 409, "A request is not possible now", _NOT_NOW)
    if not form.valid:
        return _setup_form_page(request, owner, form, status=422)
    try:
        await _portal(request).db(_submit(owner, form))
    except ConflictError:
        return error_page(request, 409, "A request is not possible now", _NOT_NOW)
    except ValidationError as exc:  # cannot happen: the form validated the same fields
        form.errors["business_name"] = exc.message
        return _setup_form_page(request, owner, form, status=422)
    return RedirectResponse("/", status_code=303)


async def request_page(request: Request) -> Response:
    owner = await _owner(request)
    if owner is None:
        return _sign_in_redirect(request)
    request_id = int(request.path_params["request_id"])

    def work(session: Session) -> Any:
        from wactl.portal.views import RequestView

        return RequestView.of(store.get_request(session, owner.tenant_id, request_id))

    try:
        view = await _portal(request).db(work)
    except NotFoundError:
        raise HTTPException(404) from None
    return render(request, "request.html", owner=owner, setup_request=view)


async def link_page(request: Request) -> Response:
    owner = await _owner(request)
    if owner is None:
        return _sign_in_redirect(request)
    return render(request, "link.html", owner=owner, headline=owner.headline)


async def qr_svg(request: Request) -> Response:
    owner = await _owner(request)
    if owner is None:
        return _sign_in_redirect(request)
    qr = owner.qr_showing
    if qr is None:
        raise HTTPException(404)
    return Response(render_qr_svg(qr), media_type="image/svg+xml")


def render_qr_svg(content: str) -> bytes:
    import segno

    code = segno.make(content, error="m", micro=False)
    buffer = io.BytesIO()
    code.save(buffer, kind="svg", scale=6, border=4, xmldecl=False, title="WhatsApp link code")
    return buffer.getvalue()


def _whole_number(request: Request, name: str, high: int) -> int | None:
    """The query parameter ``name`` as a number from 1 to ``high`` (None when absent or
    empty); anything else (digits other than ASCII, a sign, spaces, a number past
    ``high``) is a 400 naming the parameter."""
    raw = request.query_params.get(name, "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(high))) or not (
        1 <= int(raw) <= high
    ):
        raise HTTPException(400, f"'{name}' must be a number from 1 to {high}")
    return int(raw)


def _cursor(request: Request) -> int | None:
    return _whole_number(request, "before", store.MAX_ROW_ID)


def _search(request: Request) -> str:
    """The ``q`` parameter, cut at 200 characters; control characters are refused
    (PostgreSQL cannot hold NUL in text, and none belongs in a search)."""
    search = request.query_params.get("q", "")[:200]
    try:
        validation.refuse_control_characters("q", search, kind="searches")
    except ValidationError:
        raise HTTPException(400, "'q' must not contain control characters") from None
    return search


async def logs_page(request: Request) -> Response:
    search = _search(request)
    before = _cursor(request)
    owner, page = await _owner_and(
        request,
        lambda session, owner: store.conversation(
            session, owner.tenant_id, search=search, before=before
        ),
    )
    if owner is None or page is None:
        return _sign_in_redirect(request)
    return render(
        request,
        "logs.html",
        owner=owner,
        page=page,
        search=search,
        before=before,
        incoming=Direction.IN,
    )


async def events_page(request: Request) -> Response:
    before = _cursor(request)
    owner, page = await _owner_and(
        request, lambda session, owner: store.events(session, owner.tenant_id, before=before)
    )
    if owner is None or page is None:
        return _sign_in_redirect(request)
    return render(request, "events.html", owner=owner, page=page, before=before)


# --- JSON API ---------------------------------------------------------------------------------


async def api_status(request: Request) -> Response:
    owner = await _owner(request)
    if owner is None:
        return _sign_in_redirect(request)
    body = owner.status_json()
    body["csrf_token"] = csrf_token(request.session)
    return JSONResponse(body)


async def api_logs(request: Request) -> Response:
    limit = _whole_number(request, "limit", store.MAX_PAGE_SIZE) or store.PAGE_SIZE
    search = _search(request)
    before = _cursor(request)
    owner, page = await _owner_and(
        request,
        lambda session, owner: store.conversation(
            session, owner.tenant_id, search=search, before=before, limit=limit
        ),
    )
    if owner is None or page is None:
        return _sign_in_redirect(request)
    return JSONResponse(
        {"messages": [store.message_json(m) for m in page.rows], "next_before": page.older}
    )


def _nesting(value: object) -> int:
    """How deep JSON ``value`` nests (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            if depth + 1 > MAX_JSON_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _parse_json(body: bytes) -> object:
    """The JSON document in ``body``, or a 400 saying why not (not JSON; nested deeper
    than a setup request could be, which would also exhaust Python's recursion)."""
    too_deep = f"the request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)"
    try:
        value = json.loads(body)
    except RecursionError:
        raise HTTPException(400, too_deep) from None
    except ValueError:
        raise HTTPException(400, "the request body is not JSON") from None
    if _nesting(value) > MAX_JSON_DEPTH:
        raise HTTPException(400, too_deep)
    return value


async def api_setup_request(request: Request) -> Response:
    owner = await _owner(request)
    if owner is None:
        return _sign_in_redirect(request)
    refused = await _checked_post(request, owner, request.headers.get(CSRF_HEADER))
    if refused is not None:
        return refused
    body = _parse_json(await request.body())
    if not isinstance(body, dict):
        return JSONResponse({"error": "the request body must be a JSON object"}, status_code=422)
    allowed = {
        "business_name",
        "template_type",
        "language",
        "whatsapp_number",
        "timezone",
        "hours",
        "notes",
    }
    unknown = sorted(set(body) - allowed)
    if unknown:
        return JSONResponse(
            {
                "error": f"unknown field '{unknown[0]}'",
                "hint": f"allowed: {', '.join(sorted(allowed))}",
            },
            status_code=422,
        )
    if not owner.can_request_setup:
        return JSONResponse({"error": _NOT_NOW}, status_code=409)
    form = forms.read_setup(body, from_json=True)
    if not form.valid:
        first = next(iter(form.errors))
        return JSONResponse(
            {"error": f"{first}: {form.errors[first]}", "errors": form.errors}, status_code=422
        )
    try:
        request_id = await _portal(request).db(_submit(owner, form))
    except ConflictError:
        return JSONResponse({"error": _NOT_NOW}, status_code=409)

    def load(session: Session) -> dict[str, Any]:
        from wactl.portal.views import RequestView

        return RequestView.of(store.get_request(session, owner.tenant_id, request_id)).json()

    return JSONResponse({"setup_request": await _portal(request).db(load)}, status_code=201)


async def healthz(request: Request) -> Response:
    """For load balancers and tests: the process answers and the database is reachable."""
    from sqlalchemy import text

    await _portal(request).db(lambda session: session.execute(text("SELECT 1")))
    return PlainTextResponse("ok")
