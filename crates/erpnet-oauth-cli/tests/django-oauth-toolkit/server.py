"""Another independent OpenID Connect provider for the `erpnet-oauth` CLI's interoperability tests:
django-oauth-toolkit (https://github.com/jazzband/django-oauth-toolkit, on oauthlib) serving ERP.net's
paths, plus a small resource server standing in for the Domain API. The model is
`../node-oidc-provider/server.mjs`: the same command line, endpoints, test hooks and counters.

  python server.py --redirect-uri URI [--redirect-uri URI]... [--routes erpnet|provider] [--no-rotation]

Listens on 127.0.0.1 on a port the OS chooses and prints one line on stdout once it accepts
connections: `listening http://127.0.0.1:PORT`. Everything else goes to stderr. Test-only: keys, secrets
and accounts are generated or fixed here and never leave the loopback interface. The state (a SQLite
file) lives in a temporary directory that is removed when the process ends, however it ends (a
watchdog process removes it even after SIGKILL).

What is served (with `--routes erpnet`, the default):
  /id/.well-known/openid-configuration          discovery (issuer http://127.0.0.1:PORT/id)
  /id/.well-known/openid-configuration/jwks     the signing keys (a fresh RSA key, RS256)
  /id/connect/authorize, /id/connect/token, /id/connect/userinfo, /id/connect/revocation,
  /id/connect/introspect, /id/connect/endsession ERP.net's endpoint paths
  /id/account/login/                            the login form (HTML, Django's CSRF token as a hidden
                                                field), posted to itself
  /api/domain/odata/Crm_Customers               a Domain API stand-in: 200 with rows for a live access
                                                token with scope DomainApi, 401 with WWW-Authenticate
                                                otherwise
  /_test/counters                               GET: what happened, as JSON
  /_test/expire                                 POST (body: an access token): ends that access token
                                                only, as its expiry would, leaving the refresh token alive
With `--routes provider`, django-oauth-toolkit's own paths (/id/o/authorize/, /id/o/token/,
/id/o/userinfo/, /id/o/revoke_token/, /id/o/introspect/, /id/o/logout/, /id/o/.well-known/jwks.json);
discovery stays at /id/.well-known/openid-configuration, so a client that follows discovery works the
same and one that hard-codes ERP.net's paths does not.

`--strict-offline-access` (node-oidc-provider's default offline-access policy) is refused with exit
status 2: django-oauth-toolkit has no notion of offline access; it issues a refresh token with every
authorization code.
"""

import atexit
import hashlib
import html
import json
import os
import secrets
import shutil
import signal
import socketserver
import sys
import tempfile
import threading
import time
from datetime import timedelta
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

STARTED = time.monotonic()

# Nothing but the `listening` line may reach stdout: keep the real stdout aside and send anything
# else (a stray print in a library) to stderr.
REAL_STDOUT = sys.stdout
sys.stdout = sys.stderr


def log(message):
    sys.stderr.write(f"server.py: {message}\n")
    sys.stderr.flush()


# ------------------------------------------------------------------------------------------------
# Command line (as server.mjs's).

USAGE = "usage: python server.py --redirect-uri URI... [--routes erpnet|provider] [--no-rotation]"


def parse_args(args):
    redirect_uris = []
    routes = "erpnet"
    rotate = True
    i = 0
    while i < len(args):
        if args[i] == "--redirect-uri" and i + 1 < len(args):
            redirect_uris.append(args[i + 1])
            i += 1
        elif args[i] == "--routes" and i + 1 < len(args):
            routes = args[i + 1]
            i += 1
        elif args[i] == "--no-rotation":
            rotate = False
        elif args[i] == "--strict-offline-access":
            log(
                "--strict-offline-access is not supported: django-oauth-toolkit has no notion of "
                "offline access (it issues a refresh token with every authorization code)"
            )
            sys.exit(2)
        else:
            log(f"unknown argument {args[i]}")
            sys.exit(2)
        i += 1
    if not redirect_uris or routes not in ("erpnet", "provider"):
        sys.stderr.write(USAGE + "\n")
        sys.exit(2)
    return redirect_uris, routes, rotate


REDIRECT_URIS, ROUTES, ROTATE = parse_args(sys.argv[1:])

# The trusted applications, as the CLI's tests know them (the mock ERP.net's demo apps).
CONFIDENTIAL_CLIENT_ID = "my.trusted.app/first"
CLIENT_SECRET = "my_plain_app_secret"
PUBLIC_CLIENT_ID = "my.trusted.app/public"
# The one user. Its subject is a GUID, as ERP.net's users have (django-oauth-toolkit's default would be
# the user's primary key, "1"), and differs from node-oidc-provider's.
USERNAME = "admin"
PASSWORD = "admin-password"
SUBJECT = "0b7e8c1d-3f2a-4c5b-9d6e-7a8b9c0d1e2f"
SUBJECTS = {USERNAME: SUBJECT}

# ------------------------------------------------------------------------------------------------
# Runtime state: a temporary directory, removed at exit. A watchdog process (forked before any thread
# starts) waits for this process to end, whatever the way (the test harness kills with SIGKILL, which
# runs no handler), and removes the directory then: it blocks on a pipe whose only writer is this
# process, and the kernel closes that when this process dies.

STATE_DIR = tempfile.mkdtemp(prefix="dot-op-")


def start_watchdog(path):
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        try:
            os.setsid()  # out of the server's process group: a Ctrl-C there doesn't end it first
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)  # don't hold the harness's stdout/stderr pipes open
            os.closerange(3, read_end)
            os.closerange(read_end + 1, 65536)
            while os.read(read_end, 1):
                pass
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os._exit(0)
    os.close(read_end)
    return write_end  # kept open for this process's lifetime


WATCHDOG_PIPE = start_watchdog(STATE_DIR)
atexit.register(shutil.rmtree, STATE_DIR, ignore_errors=True)
# SIGTERM ends the process through sys.exit, so that atexit runs.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

# ------------------------------------------------------------------------------------------------
# The listening socket comes first: the issuer (and so Django's settings) needs the port.


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 64

    def server_bind(self):
        # HTTPServer.server_bind looks the host name up (socket.getfqdn); nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        self.setup_environ()


class QuietHandler(WSGIRequestHandler):
    """Logs each request to stderr (wsgiref's format), never touches stdout."""

    def address_string(self):
        return self.client_address[0]  # no reverse lookup


HTTPD = ThreadingWSGIServer(("127.0.0.1", 0), QuietHandler)
PORT = HTTPD.server_address[1]
BASE = f"http://127.0.0.1:{PORT}"
ISSUER = f"{BASE}/id"

# ------------------------------------------------------------------------------------------------
# Django, configured in code.

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

import django  # noqa: E402
from django.conf import settings  # noqa: E402

# A fresh RSA key for the ID tokens (RS256).
RSA_PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    .decode("ascii")
)

settings.configure(
    DEBUG=False,
    SECRET_KEY=secrets.token_hex(32),
    ALLOWED_HOSTS=["127.0.0.1"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "oauth2_provider",
    ],
    MIDDLEWARE=[
        f"{__name__}.count_server_errors",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",  # CSRF stays on (DOT's endpoints are exempt)
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(STATE_DIR, "db.sqlite3"),
            "OPTIONS": {
                # Several client processes at once: writers wait for each other (busy timeout, write
                # lock taken when a transaction starts) instead of failing with "database is locked";
                # WAL lets readers go on while one writes.
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
            },
        }
    },
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    # The tables come straight from the models (`migrate --run-syncdb`): replaying the 37 migrations of
    # these apps would take most of the startup time (seconds) for the same schema.
    MIGRATION_MODULES={app: None for app in ("auth", "contenttypes", "sessions", "oauth2_provider")},
    USE_TZ=True,
    # Test-only: a fast password hash (the default PBKDF2 takes most of a second per login).
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    LOGIN_URL="/id/account/login/",
    LOGGING={
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": "WARNING"},
        "loggers": {"django": {"handlers": ["stderr"], "level": "WARNING", "propagate": False}},
    },
    OAUTH2_PROVIDER={
        "OIDC_ENABLED": True,
        "OIDC_RSA_PRIVATE_KEY": RSA_PEM,
        # The issuer exactly as ERP.net's: no trailing slash. Also the base of every discovery URL.
        "OIDC_ISS_ENDPOINT": ISSUER,
        "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,  # publishes end_session_endpoint
        "OAUTH2_VALIDATOR_CLASS": f"{__name__}.ErpNetValidator",
        "SCOPES": {
            "openid": "OpenID Connect",
            "profile": "The user's profile",
            "offline_access": "Offline access",
            "DomainApi": "ERP.net's Domain API",
        },
        "DEFAULT_SCOPES": ["openid"],
        # ERP.net's lifetimes: access tokens an hour, ID tokens 300 s, codes 300 s, refresh tokens about
        # a month (DOT counts this from the access token's expiry).
        "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
        "ID_TOKEN_EXPIRE_SECONDS": 300,
        "AUTHORIZATION_CODE_EXPIRE_SECONDS": 300,
        "REFRESH_TOKEN_EXPIRE_SECONDS": 30 * 24 * 3600,
        # ERP.net rotates refresh tokens on every use; the old one is dead at once (no grace period)
        # and a reuse of it revokes the whole family. `--no-rotation`: the refresh token stays the same.
        "ROTATE_REFRESH_TOKEN": ROTATE,
        "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
        "REFRESH_TOKEN_REUSE_PROTECTION": True,
        # PKCE for both applications, as ERP.net requires.
        "PKCE_REQUIRED": True,
        # RFC 9207: `iss` in the authorization response, advertised in discovery, as ERP.net does.
        "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    },
)
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth import login as auth_login  # noqa: E402
from django.contrib.auth.forms import AuthenticationForm  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse  # noqa: E402
from django.middleware.csrf import get_token  # noqa: E402
from django.urls import include, path, re_path  # noqa: E402
from django.utils import timezone  # noqa: E402
from django.utils.http import url_has_allowed_host_and_scheme  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from oauth2_provider import views as dot_views  # noqa: E402
from oauth2_provider.models import get_access_token_model, get_application_model, get_refresh_token_model  # noqa: E402
from oauth2_provider.oauth2_validators import OAuth2Validator  # noqa: E402

AccessToken = get_access_token_model()
Application = get_application_model()
RefreshToken = get_refresh_token_model()

# ------------------------------------------------------------------------------------------------
# Counters (as server.mjs's), behind a lock: requests run on many threads.

COUNTERS = {
    "authorization_code": 0,  # successful grants of that type at the token endpoint
    "refresh_token": 0,
    "invalid_grant": 0,  # the token endpoint answered invalid_grant
    "token_errors": 0,  # any non-200 answer of the token endpoint
    "grants_revoked": 0,  # refresh tokens revoked at the revocation endpoint
    "server_errors": 0,  # 5xx from any endpoint
    "api_ok": 0,
    "api_unauthorized": 0,
    "logins": 0,  # successful username/password logins
}
COUNTERS_LOCK = threading.Lock()


def count(name):
    with COUNTERS_LOCK:
        COUNTERS[name] += 1


def count_server_errors(get_response):
    """Middleware: counts 5xx answers (Django has turned exceptions into 500s by then)."""

    def middleware(request):
        response = get_response(request)
        if response.status_code >= 500:
            count("server_errors")
        return response

    return middleware


def checksum(token):
    """How DOT finds a token in its tables (it stores a SHA-256 of it)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------------
# The OAuth2/OIDC side: DOT's validator with the GUID subject and a profile.


class ErpNetValidator(OAuth2Validator):
    def get_claim_dict(self, request):
        claims = super().get_claim_dict(request)
        # DOT's `sub` is the user's primary key; ERP.net's is a GUID. Used by the ID token and userinfo.
        claims["sub"] = lambda r: SUBJECTS[r.user.get_username()]
        return claims

    def get_additional_claims(self):
        # Given with the `profile` scope (DOT's oidc_claim_scope). Request-agnostic (callables), so that
        # discovery lists them in claims_supported.
        return {"name": lambda request: "Administrator", "preferred_username": lambda request: request.user.get_username()}


class DiscoveryView(dot_views.ConnectDiscoveryInfoView):
    """DOT's discovery document, plus the revocation and introspection endpoints that ERP.net's
    (IdentityServer's) names and DOT's OIDC document leaves out (it lists them only in its RFC 8414
    document)."""

    def get(self, request, *args, **kwargs):
        data = json.loads(super().get(request, *args, **kwargs).content)
        data["revocation_endpoint"] = self._get_endpoint_url(request, "revoke-token", required=True)
        data["introspection_endpoint"] = self._get_endpoint_url(request, "introspect", required=True)
        response = JsonResponse(data)
        response["Access-Control-Allow-Origin"] = "*"
        return response


_token_view = dot_views.TokenView.as_view()
_revoke_view = dot_views.RevokeTokenView.as_view()


@csrf_exempt
def token_view(request):
    """DOT's token endpoint, counted."""
    request.body  # read (and cache) the raw body before request.POST parses it, so DOT can read both
    grant_type = request.POST.get("grant_type")
    response = _token_view(request)
    if response.status_code == 200:
        if grant_type in ("authorization_code", "refresh_token"):
            count(grant_type)
    else:
        count("token_errors")
        try:
            if json.loads(response.content).get("error") == "invalid_grant":
                count("invalid_grant")
        except (ValueError, AttributeError):
            pass
        log(f"token endpoint: {response.status_code} {response.content[:300]!r}")
    return response


@csrf_exempt
def revoke_view(request):
    """DOT's revocation endpoint; counts the refresh tokens it revokes."""
    request.body
    token = request.POST.get("token", "")
    live = RefreshToken.objects.filter(token_checksum=checksum(token), revoked__isnull=True).first() if token else None
    response = _revoke_view(request)
    if response.status_code == 200 and live is not None:
        if RefreshToken.objects.filter(pk=live.pk, revoked__isnull=False).exists():
            count("grants_revoked")
    elif response.status_code != 200:
        log(f"revocation endpoint: {response.status_code} {response.content[:300]!r}")
    return response


# ------------------------------------------------------------------------------------------------
# The login form: Django's AuthenticationForm, CSRF-protected (the middleware checks the hidden
# `csrfmiddlewaretoken` against the `csrftoken` cookie). The form posts to the page's own URL, whose
# `next` (the authorize request) Django's redirect_to_login has percent-encoded: no HTML escaping is
# needed in the `action` attribute for it (it is escaped anyway).


def login_page(request, form):
    error = '<p class="error">Wrong user name or password</p>' if form.errors else ""
    body = f"""<!doctype html><html><body><h1>Sign in</h1>{error}
<form method="post" action="{html.escape(request.get_full_path(), quote=True)}">
<input type="hidden" name="csrfmiddlewaretoken" value="{html.escape(get_token(request), quote=True)}">
<input name="username"><input name="password" type="password"><button type="submit">Sign in</button>
</form></body></html>"""
    response = HttpResponse(body, content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def login_view(request):
    if request.method not in ("GET", "POST"):
        return HttpResponse("method not allowed", status=405, content_type="text/plain")
    form = AuthenticationForm(request, data=request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        auth_login(request, form.get_user())
        count("logins")
        target = request.GET.get("next", "")
        if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
            target = "/id/"
        return HttpResponseRedirect(target)
    return login_page(request, form)


# ------------------------------------------------------------------------------------------------
# The Domain API stand-in and the test hooks.


def domain_api(request):
    auth = request.headers.get("Authorization", "")
    token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
    given = bool(token) and " " not in token
    access = AccessToken.objects.select_related("user").filter(token_checksum=checksum(token)).first() if given else None
    if access is None or access.user is None or not access.is_valid(["DomainApi"]):
        count("api_unauthorized")
        response = HttpResponse(b"", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = (
            'Bearer error="invalid_token", error_description="The access token is not valid"' if given else "Bearer"
        )
        return response
    count("api_ok")
    owner = SUBJECTS[access.user.get_username()]
    rows = [
        {"Id": "1b2f...", "Number": "C-0001", "Name": "Ada Lovelace Ltd", "Owner": owner},
        {"Id": "3c4d...", "Number": "C-0002", "Name": "Grace Hopper Inc", "Owner": owner},
    ]
    body = {"@odata.context": f"{BASE}/api/domain/odata/$metadata#Crm_Customers", "value": rows}
    response = HttpResponse(json.dumps(body), content_type="application/json; odata.metadata=minimal")
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
def test_counters(request):
    if request.method != "GET":
        return HttpResponse("method not allowed", status=405, content_type="text/plain")
    with COUNTERS_LOCK:
        return JsonResponse(dict(COUNTERS))


@csrf_exempt
def test_expire(request):
    """Ends one access token as its expiry would (its refresh token stays usable: DOT keeps the
    refresh token's link to it, so the token is marked expired rather than deleted)."""
    if request.method != "POST":
        return HttpResponse("method not allowed", status=405, content_type="text/plain")
    token = request.body.decode("utf-8", "replace").strip()
    updated = AccessToken.objects.filter(token_checksum=checksum(token)).update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    return HttpResponse(b"", status=204 if updated else 404, content_type="text/plain")


# ------------------------------------------------------------------------------------------------
# URLs. DOT's views find each other by name in the `oauth2_provider` namespace.

# (the view's name, the view, its path with `--routes erpnet`, its path with `--routes provider`: DOT's own
# paths of oauth2_provider.urls, mounted at /id/o/). Discovery stays where the issuer says.
ENDPOINTS = [
    ("jwks-info", dot_views.JwksInfoView.as_view(), ".well-known/openid-configuration/jwks", "o/.well-known/jwks.json"),
    ("authorize", dot_views.AuthorizationView.as_view(), "connect/authorize", "o/authorize/"),
    ("token", token_view, "connect/token", "o/token/"),
    ("user-info", dot_views.UserInfoView.as_view(), "connect/userinfo", "o/userinfo/"),
    ("revoke-token", revoke_view, "connect/revocation", "o/revoke_token/"),
    ("introspect", dot_views.IntrospectTokenView.as_view(), "connect/introspect", "o/introspect/"),
    ("rp-initiated-logout", dot_views.RPInitiatedLogoutView.as_view(), "connect/endsession", "o/logout/"),
]
oauth_patterns = [
    re_path(r"^\.well-known/openid-configuration$", DiscoveryView.as_view(), name="oidc-connect-discovery-info")
] + [
    path(erpnet if ROUTES == "erpnet" else provider, view, name=name)
    for name, view, erpnet, provider in ENDPOINTS
]

urlpatterns = [
    path("id/account/login/", login_view),
    path("id/", include((oauth_patterns, "oauth2_provider"))),
    path("api/domain/odata/Crm_Customers", domain_api),
    path("_test/counters", test_counters),
    path("_test/expire", test_expire),
]

# ------------------------------------------------------------------------------------------------
# The database: tables, the user, the two applications.

call_command("migrate", run_syncdb=True, verbosity=0, interactive=False, skip_checks=True)
get_user_model().objects.create_user(USERNAME, password=PASSWORD)
for client_id, client_type, secret in [
    (CONFIDENTIAL_CLIENT_ID, Application.CLIENT_CONFIDENTIAL, CLIENT_SECRET),
    (PUBLIC_CLIENT_ID, Application.CLIENT_PUBLIC, ""),
]:
    Application.objects.create(
        name=client_id,
        client_id=client_id,
        client_secret=secret,
        hash_client_secret=False,
        client_type=client_type,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,  # also allows refresh_token
        redirect_uris=" ".join(REDIRECT_URIS),  # exact match
        skip_authorization=True,  # a trusted application: no consent screen
        algorithm=Application.RS256_ALGORITHM,
    )

# ------------------------------------------------------------------------------------------------
# Serve.

DJANGO_APP = get_wsgi_application()


def app(environ, start_response):
    """Django, with a last guard that counts and answers what escapes it."""
    try:
        return DJANGO_APP(environ, start_response)
    except Exception as err:  # noqa: BLE001
        count("server_errors")
        log(f"unhandled: {err!r}")
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [f"server.py: {err}".encode()]


HTTPD.set_app(app)
log(f"ready in {time.monotonic() - STARTED:.2f} s (state in {STATE_DIR})")
REAL_STDOUT.write(f"listening {BASE}\n")
REAL_STDOUT.flush()
try:
    HTTPD.serve_forever()
except KeyboardInterrupt:
    pass
