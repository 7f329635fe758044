"""A DBSS + IAM simulator honouring the documented contract: the test fake, the demo and `python -m bot simulator`.

Routes: both reboot paths, the v2 instance list with paging, IAM password login, and the ECS/CCE metadata
service's temporary credentials (`GET /openstack/latest/securitykey`, with its optional session token,
`PUT /meta-data/latest/api/token`). Every DBSS answer carries X-Request-Id. DBSS routes check an
X-Auth-Token or an SDK-HMAC-SHA256 signature (with X-Security-Token for temporary keys) the way the API
gateway does, and answer with the gateway's flat error body when they fail.

One simulator serves one or more projects, each in its region. Several simulators (one per regional
endpoint) can share a `Cloud`: one IAM, its project-scoped tokens, and the account's AK/SK and temporary keys.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bot.dbss import signing
from bot.dbss.metadata import NO_AGENCY_TEXT, SECURITY_KEY_PATH, SESSION_HEADER, SESSION_PATH
from bot.simulator.http import Answer, LoopbackServer, Received, request_id

REBOOT_RE = re.compile(r"^/v1/(?P<pid>[^/]+)/(?:dbss/)?audit/instance/reboot$")
LIST_RE = re.compile(r"^/v2/(?P<pid>[^/]+)/audit/instances$")
IAM_PATH = "/v3/auth/tokens"

Route = Literal["reboot", "list", "iam", "metadata"]
# What `delays` and `script` are keyed by: a route everywhere, or a route of one project (its DBSS path).
RouteKey = Route | tuple[str, Route]
EXPIRES_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass
class TemporaryKey:
    """A temporary AK/SK with its security token, as the metadata service hands them out."""

    access: str
    secret: str
    security_token: str
    expires_at: float

    def body(self) -> dict[str, Any]:
        expires = datetime.fromtimestamp(self.expires_at, UTC).strftime(EXPIRES_FORMAT)
        return {
            "credential": {
                "access": self.access,
                "secret": self.secret,
                "securitytoken": self.security_token,
                "expires_at": expires,
            }
        }


@dataclass
class Cloud:
    """What every regional endpoint of one account shares: the global IAM and the account's credentials.

    Pass one to several simulators (`DbssSimulator(..., cloud=first.cloud)`): a token IAM issued through any
    of them, an AK/SK pair and a temporary key from any metadata service are then accepted by all of them."""

    tokens: set[str] = field(default_factory=set)  # every token the gateway accepts (given ones and IAM's)
    expired_tokens: set[str] = field(default_factory=set)
    aksk: dict[str, str] = field(default_factory=dict)
    iam_users: dict[tuple[str, str], str] = field(default_factory=dict)  # (domain, user) -> password
    temporary_keys: dict[str, TemporaryKey] = field(default_factory=dict)
    projects: dict[str, str] = field(default_factory=dict)  # project ID -> region: what IAM can scope a token to
    # IAM tokens are project-scoped; a token given to the constructor has no entry here and works in any project.
    token_projects: dict[str, str] = field(default_factory=dict)
    logins_by_project: Counter[str] = field(default_factory=Counter)
    # One lock for the cloud and every simulator on it: their server threads all touch the shared state.
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def logins(self) -> int:
        return sum(self.logins_by_project.values())


@dataclass
class SimInstance:
    id: str
    name: str
    status: str = "ACTIVE"
    task: str = "NO_TASK"
    version: str = "23.04.18.102306"
    region: str = "cn-north-4"
    project_id: str = ""  # set by add_instance: the project whose list shows it and whose path reboots it
    rebooting_polls_left: int = 0
    rebooting_until: float | None = None
    end_status: str = "ACTIVE"
    reboot_error: tuple[int, str, str] | None = None  # (HTTP status, error_code, error_msg) DBSS answers a reboot with


class DbssSimulator(LoopbackServer):
    """DBSS and IAM on one loopback server. Tests script errors, delays and outages and read `received`.

    It serves `project_id` (in `region`) and any project added with `add_project`; `cloud` shares IAM and
    the credentials with other simulators (the given tokens, AK/SK pairs and IAM users join it)."""

    def __init__(
        self,
        *,
        project_id: str = "0123456789abcdef0123456789abcdef",
        region: str = "cn-north-4",
        tokens: tuple[str, ...] = ("good-token",),
        aksk: dict[str, str] | None = None,
        iam_users: dict[tuple[str, str], str] | None = None,
        cloud: Cloud | None = None,
        reboot_polls: int = 2,
        reboot_seconds: float | None = None,
        error_shape: Literal["A", "B"] = "A",
        camel_case: bool = False,
    ) -> None:
        super().__init__()
        self.cloud = cloud if cloud is not None else Cloud()
        self.lock = self.cloud.lock
        self.cloud.tokens.update(tokens)
        self.cloud.aksk.update(aksk or {})
        self.cloud.iam_users.update(iam_users or {})
        self.project_id = project_id  # the first project: add_instance's default
        self.projects: dict[str, str] = {}  # project ID -> region, the projects this endpoint serves
        self.add_project(project_id, region)
        self.reboot_polls = reboot_polls
        self.reboot_seconds = reboot_seconds  # set: a reboot lasts this long in wall-clock time (demo, standalone)
        self.error_shape = error_shape
        self.camel_case = camel_case
        self.instances: dict[str, SimInstance] = {}
        self.scripted: dict[RouteKey, deque[Answer | None]] = defaultdict(deque)
        self.delays: dict[RouteKey, float] = defaultdict(float)  # a project's delay adds to its route's
        # A project whose region is down: each of its list and reboot calls gets this answer (None: dropped).
        self.outages: dict[str, Answer | None] = {}
        self.reboots_done: list[str] = []
        # The metadata service: an agency bound to the "server", temporary keys it issued, session tokens.
        self.agency = True
        self.temporary_lifetime_seconds = 3600.0  # the simulator's choice; the platform's own lifetime may differ
        self.metadata_sessions: set[str] = set()
        self.metadata_session_api = True  # False: PUT .../api/token answers 404, as on platforms without it
        self.metadata_session_required = False

    # The cloud's shared state, under the names tests have always used.
    @property
    def tokens(self) -> set[str]:
        return self.cloud.tokens

    @property
    def expired_tokens(self) -> set[str]:
        return self.cloud.expired_tokens

    @property
    def aksk(self) -> dict[str, str]:
        return self.cloud.aksk

    @property
    def iam_users(self) -> dict[tuple[str, str], str]:
        return self.cloud.iam_users

    @property
    def temporary_keys(self) -> dict[str, TemporaryKey]:
        return self.cloud.temporary_keys

    @property
    def logins(self) -> int:
        return self.cloud.logins

    @property
    def logins_by_project(self) -> Counter[str]:
        return self.cloud.logins_by_project

    # --- set-up helpers for tests -------------------------------------------------------------------

    def add_project(self, project_id: str, region: str) -> None:
        """Serve another project on this endpoint; IAM (the whole cloud) can then scope tokens to it."""
        with self.lock:
            if self.cloud.projects.setdefault(project_id, region) != region:
                raise ValueError(f"project {project_id} is already in {self.cloud.projects[project_id]}")
            self.projects[project_id] = region

    def add_instance(
        self, instance_id: str, name: str = "audit-1", *, project: str | None = None, **fields: Any
    ) -> SimInstance:
        """An instance of `project` (default: the first project), in that project's region."""
        project = self.project_id if project is None else project
        fields.setdefault("region", self.projects[project])
        instance = SimInstance(id=instance_id, name=name, project_id=project, **fields)
        with self.lock:
            self.instances[instance_id] = instance
        return instance

    def script(self, route: Route, answer: Answer | None, *, project: str | None = None) -> None:
        """The next call to `route` (of `project` only, if given) gets this answer (None: the connection is dropped).

        A project's scripted answers come before the route's; `project` applies to the DBSS routes, whose path
        names it."""
        with self.lock:
            self.scripted[route if project is None else (project, route)].append(answer)

    def dbss_error(self, status: int, code: str, msg: str) -> Answer:
        """A DBSS error in the configured shape (A nested, B flat)."""
        if self.error_shape == "A":
            return Answer(status, {"error": {"error_code": code, "error_msg": msg}})
        return Answer(
            status,
            {"error_code": code, "error_msg": msg, "encoded_authorization_message": "", "details": []},
        )

    @staticmethod
    def gateway_error(status: int, code: str, msg: str) -> Answer:
        rid = request_id()
        return Answer(status, {"error_code": code, "error_msg": msg, "request_id": rid}, {"X-Request-Id": rid})

    def reboot_requests(self, *, project: str | None = None) -> list[Received]:
        return self._dbss_requests(REBOOT_RE, project)

    def list_requests(self, *, project: str | None = None) -> list[Received]:
        return self._dbss_requests(LIST_RE, project)

    def _dbss_requests(self, pattern: re.Pattern[str], project: str | None) -> list[Received]:
        with self.lock:
            matches = [(r, pattern.match(r.path)) for r in self.received]
        return [r for r, m in matches if m and (project is None or m.group("pid") == project)]

    def metadata_requests(self) -> list[Received]:
        """The GETs of temporary credentials (not the session-token PUTs)."""
        with self.lock:
            return [r for r in self.received if r.path == SECURITY_KEY_PATH]

    def issue_temporary_key(self, lifetime_seconds: float | None = None) -> TemporaryKey:
        """A new temporary AK/SK and security token that the gateway accepts until it expires."""
        key = TemporaryKey(
            access="TMP" + secrets.token_hex(10).upper(),
            secret=secrets.token_urlsafe(30),
            security_token="gQ" + secrets.token_urlsafe(300).replace("-", "+").replace("_", "/") + "==",
            expires_at=time.time()
            + (self.temporary_lifetime_seconds if lifetime_seconds is None else lifetime_seconds),
        )
        with self.lock:
            self.temporary_keys[key.access] = key
        return key

    def expire_temporary_keys(self) -> None:
        """Every temporary key issued so far expires now (the gateway refuses them with APIGW.0307)."""
        with self.lock:
            for key in self.temporary_keys.values():
                key.expires_at = min(key.expires_at, time.time() - 1)

    # --- the server ---------------------------------------------------------------------------------

    def handle(self, request: Received) -> Answer | None:
        if request.method == "PUT" and request.path == SESSION_PATH:
            return self._metadata_session(request)
        m = REBOOT_RE.match(request.path) if request.method == "POST" else LIST_RE.match(request.path)
        if request.method == "GET" and request.path == SECURITY_KEY_PATH:
            route: Route = "metadata"
        elif request.method == "POST" and request.path == IAM_PATH:
            route = "iam"
        elif request.method == "POST" and m:
            route = "reboot"
        elif request.method == "GET" and m:
            route = "list"
        else:
            return self._with_id(
                self.gateway_error(
                    404, "APIGW.0101", "The API does not exist or has not been published in the environment"
                )
            )
        pid = m.group("pid") if m else None
        delay = self.delays[route] + (self.delays.get((pid, route), 0.0) if pid is not None else 0.0)
        if delay:
            self.wait(delay)
        if route == "iam":
            answer = self._iam(request)
            return None if answer is None else self._with_id(answer)
        if route == "metadata":
            return self._metadata(request)
        assert pid is not None
        with self.lock:
            if pid in self.outages:  # the region is down: nothing answers for it, whatever the credentials
                outage = self.outages[pid]
                return None if outage is None else self._with_id(replace(outage, headers=dict(outage.headers)))
        denied = self._authenticate(request)
        if denied is not None:
            return self._with_id(denied)
        with self.lock:
            for queue in (self.scripted[(pid, route)], self.scripted[route]):
                if queue:
                    scripted = queue.popleft()
                    return None if scripted is None else self._with_id(scripted)
        if pid not in self.projects:
            return self._with_id(self.gateway_error(403, "APIGW.0310", "The project is unavailable"))
        scope = self._scope(request)
        if scope is not None and scope != pid:
            # Good credentials, but for another project. The gateway's error table (devg-apisign, "Error Codes";
            # dbss-api.md section 6) gives for APIGW.0307 (401, "The token must be updated") the cause "an API of
            # another region may have been called; check the API URL": a project is one region's, so this is it.
            # DBSS documents no code of its own for it (unlike services answering "tenant_id in token mismatches
            # with tenant_id in url"). A client treating 0307 as a stale token logs in once more and is refused again.
            return self._with_id(self.gateway_error(401, "APIGW.0307", "The token must be updated."))
        answer = self._reboot(request, pid) if route == "reboot" else self._list(request, pid)
        return self._with_id(answer)

    @staticmethod
    def _with_id(answer: Answer) -> Answer:
        body_id = answer.body.get("request_id") if isinstance(answer.body, dict) else None
        answer.headers.setdefault("X-Request-Id", body_id or request_id())
        return answer

    def _authenticate(self, request: Received) -> Answer | None:
        authorization = request.headers.get("authorization")
        if authorization is not None:
            return self._check_signature(request, authorization)
        token = request.headers.get("x-auth-token")
        with self.lock:
            if token in self.expired_tokens:
                return self.gateway_error(401, "APIGW.0307", "The token must be updated.")
            if token is None or token not in self.tokens:
                return self.gateway_error(
                    401, "APIGW.0301", "Incorrect IAM authentication information: x-auth-token not found"
                )
        return None

    def _scope(self, request: Received) -> str | None:
        """The project the credentials are for: an IAM token's scope, or a signed request's X-Project-Id."""
        if "authorization" in request.headers:
            return request.headers.get("x-project-id")
        with self.lock:
            return self.cloud.token_projects.get(request.headers.get("x-auth-token", ""))

    def _check_signature(self, request: Received, authorization: str) -> Answer | None:
        bad = self.gateway_error(
            401, "APIGW.0301", "Incorrect IAM authentication information: verify aksk signature fail"
        )
        parts = signing.parse_authorization(authorization)
        if parts is None:
            return bad
        with self.lock:
            temporary = self.temporary_keys.get(parts["Access"])
            secret = temporary.secret if temporary is not None else self.aksk.get(parts["Access"])
        if secret is None:
            return bad
        signed = parts["SignedHeaders"].split(";")
        if not {"host", "x-sdk-date"} <= set(signed) or any(h not in request.headers for h in signed):
            return bad
        try:
            sent_at = datetime.strptime(request.headers["x-sdk-date"], signing.DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            return bad
        if abs(datetime.now(UTC) - sent_at) > timedelta(minutes=15):
            return bad
        text = signing.string_to_sign(
            method=request.method,
            path=request.raw_path.split("?", 1)[0],
            query=request.query,
            headers={h: request.headers[h] for h in signed},
            signed=signed,
            body=request.body,
        )
        expected = signing.signature(secret, text)
        if not secrets.compare_digest(expected, parts["Signature"]):
            return bad
        if temporary is not None:
            return self._check_security_token(request, temporary, signed)
        return None

    def _check_security_token(self, request: Received, key: TemporaryKey, signed: list[str]) -> Answer | None:
        """A temporary key needs its own security token, signed; an expired one is refused as an expired token.

        The codes are the gateway's (APIGW.0301 wrong credentials, APIGW.0307 expired); the wording after the
        colon is the simulator's own."""
        token = request.headers.get("x-security-token")
        if token is None or "x-security-token" not in signed or not secrets.compare_digest(token, key.security_token):
            return self.gateway_error(
                401, "APIGW.0301", "Incorrect IAM authentication information: verify security token fail"
            )
        if time.time() >= key.expires_at:
            return self.gateway_error(401, "APIGW.0307", "The token must be updated.")
        return None

    def _metadata_session(self, request: Received) -> Answer:
        """PUT /meta-data/latest/api/token: a session token for the metadata service, where the platform has one."""
        if not self.metadata_session_api:
            return Answer(404, raw=b"404 Not Found")
        if not request.headers.get("x-metadata-token-ttl-seconds", "").isdigit():
            return Answer(400, raw=b"X-Metadata-Token-Ttl-Seconds is required")
        session = secrets.token_urlsafe(24)
        with self.lock:
            self.metadata_sessions.add(session)
        return Answer(200, raw=session.encode(), headers={"Content-Type": "text/plain"})

    def _metadata(self, request: Received) -> Answer | None:
        """GET /openstack/latest/securitykey: a new temporary AK/SK and security token of the agency."""
        with self.lock:
            if self.scripted["metadata"]:
                return self.scripted["metadata"].popleft()
            session = request.headers.get(SESSION_HEADER.lower())
            if (session is not None or self.metadata_session_required) and session not in self.metadata_sessions:
                return Answer(
                    401, raw=b"401 Unauthorized: invalid metadata token", headers={"Content-Type": "text/plain"}
                )
        if not self.agency:
            return Answer(401, raw=NO_AGENCY_TEXT.encode(), headers={"Content-Type": "text/plain"})
        return Answer(200, self.issue_temporary_key().body())

    def _iam(self, request: Received) -> Answer | None:
        try:
            auth = json.loads(request.body)["auth"]
            user = auth["identity"]["password"]["user"]
            key = (user["domain"]["name"], user["name"])
            password = user["password"]
            project = auth["scope"]["project"]["id"]
        except (ValueError, KeyError, TypeError):
            return Answer(400, {"error": {"code": 400, "message": "The request is malformed.", "title": "Bad Request"}})
        with self.lock:
            if self.scripted["iam"]:
                return self.scripted["iam"].popleft()  # None: the connection is dropped
        if self.iam_users.get(key) != password or project not in self.cloud.projects:
            return Answer(
                401,
                {"error": {"code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}},
            )
        token = "MII" + secrets.token_urlsafe(48)
        now = datetime.now(UTC)
        with self.lock:
            self.cloud.logins_by_project[project] += 1
            self.tokens.add(token)
            self.cloud.token_projects[token] = project
            region = self.cloud.projects[project]
        body = {
            "token": {
                "expires_at": (now + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "issued_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "methods": ["password"],
                "project": {"id": project, "name": region},  # a project's name is its region's ID
                "user": {"name": key[1], "domain": {"name": key[0]}},
            }
        }
        return Answer(201, body, {"X-Subject-Token": token})

    def _reboot(self, request: Received, pid: str) -> Answer:
        try:
            instance_id = json.loads(request.body)["instance_id"]
            if not isinstance(instance_id, str) or not 32 <= len(instance_id) <= 64:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return self.dbss_error(400, "DBSS.10000001", "Enter a valid request message")
        with self.lock:
            instance = self.instances.get(instance_id)
            if instance is None or instance.project_id != pid:  # another project's instance is unknown here
                return self.dbss_error(400, "DBSS.10020021", "Invalid request parameter ID.")
            if instance.status != "ACTIVE" or instance.task != "NO_TASK":
                return self.dbss_error(400, "DBSS.10020132", "Restarting DBSS instance failed.")
            if instance.reboot_error is not None:
                return self.dbss_error(*instance.reboot_error)
            instance.task = "rebooting"
            instance.rebooting_polls_left = self.reboot_polls
            if self.reboot_seconds is not None:
                instance.rebooting_until = time.time() + self.reboot_seconds
            self.reboots_done.append(instance_id)
        return Answer(200, {"result": "success"})

    def _list(self, request: Received, pid: str) -> Answer:
        params = request.params
        try:
            offset = int(params.get("offset", "0"))
            limit = int(params.get("limit", "100"))
            if offset < 0 or not 0 < limit <= 1000:
                raise ValueError
        except ValueError:
            return self.dbss_error(400, "DBSS.10000001", "Enter a valid request message")
        with self.lock:
            everything = [i for i in self.instances.values() if i.project_id == pid]
            if offset == 0:  # time passes for rebooting instances with each full read of the list
                for instance in everything:
                    if instance.task != "rebooting":
                        continue
                    if instance.rebooting_until is not None:
                        done = time.time() >= instance.rebooting_until
                    else:
                        done = instance.rebooting_polls_left <= 0
                        instance.rebooting_polls_left -= 1
                    if done:
                        instance.task = "NO_TASK"
                        instance.status = instance.end_status
            page = [self._render(i) for i in everything[offset : offset + limit]]
        return Answer(200, {"instances": page, "total": len(everything)})

    def _render(self, instance: SimInstance) -> dict[str, Any]:
        body = {
            "id": instance.id,
            "name": instance.name,
            "status": instance.status,
            "task": instance.task,
            "version": instance.version,
            "region": instance.region,
            "resource_spec_code": "dbss.audit.low",
            "charge_model": "Demand",
            "remain_days": "30",
        }
        if self.camel_case:  # Terraform reads both styles: "both camel case and underline style fields will exist"
            body["chargeModel"] = body.pop("charge_model")
            body["remainDays"] = body.pop("remain_days")
            body["resourceSpecCode"] = body.pop("resource_spec_code")
        return body


DEMO_PROJECT_ID = "d3m0d3m0d3m0d3m0d3m0d3m0d3m0d3m0"
DEMO_TOKEN = "demo-token"  # noqa: S105 - the simulator's published demo token, not a secret
# The demo's second region, on an endpoint of its own, and the AK/SK that signs for both (one credential, as the
# bot requires with several targets).
DEMO_AP_PROJECT_ID = "d3m0a9a9d3m0a9a9d3m0a9a9d3m0a9a9"
DEMO_AK = "DEMOAK00000000000000"
DEMO_SK = "demo-secret-key-not-a-secret-0000000000"


def with_demo_instances(simulator: DbssSimulator) -> DbssSimulator:
    """A handful of instances in the states an on-call engineer meets."""
    simulator.add_instance("5f1c2a3b4d5e6f708192a3b4c5d6e7f8", "audit-prod-eu")
    simulator.add_instance("0b6e9d2c4a7f4e1b9c3d5a6b7c8d9e0f", "audit-prod-us")
    simulator.add_instance("7a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9", "audit-staging", status="SHUTOFF")
    legacy = simulator.add_instance("9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b", "audit-legacy")
    legacy.reboot_error = (400, "DBSS.10020132", "Restarting DBSS instance failed.")  # shows an error in the demo
    return simulator


def demo_second_region(cloud: Cloud, *, reboot_seconds: float | None = None) -> DbssSimulator:
    """The demo's ap-southeast-1: another project on another endpoint of the same cloud."""
    simulator = DbssSimulator(
        project_id=DEMO_AP_PROJECT_ID, region="ap-southeast-1", cloud=cloud, reboot_seconds=reboot_seconds
    )
    simulator.add_instance("3c5e7a9b1d2f4e6a8c0b2d4f6a8c0e1f", "audit-prod-ap")
    simulator.add_instance("4d6f8b0c2e3a5f7b9d1c3e5a7b9d1f2a", "audit-prod-eu")  # the same name as in cn-north-4
    return simulator
