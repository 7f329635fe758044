"""The simulator as a multi-region cloud: several projects per endpoint, endpoints sharing one IAM and one set
of credentials, project-scoped tokens, and per-project outages, delays and scripted answers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from bot.dbss import AkSkAuth, IamLoginError, IamPasswordAuth
from tests.fakes.dbss import FakeDbss

P1 = "11111111111111111111111111111111"  # cn-north-4, served by `north`
P2 = "22222222222222222222222222222222"  # ap-southeast-1, served by `south`
P3 = "33333333333333333333333333333333"  # cn-north-4 too, a second project on `north`
I1 = "1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a"
I2 = "2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b"
I3 = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c"
AK, SK = "AKMULTI000000000000", "SKMULTIsecretsecretsecretsecretsecret00"
USER = ("acme", "oncall-bot")
PASSWORD = "correct horse battery staple"


@pytest.fixture
def north() -> Iterator[FakeDbss]:
    sim = FakeDbss(project_id=P1, region="cn-north-4", aksk={AK: SK}, iam_users={USER: PASSWORD})
    sim.add_project(P3, "cn-north-4")
    sim.add_instance(I1, "audit-north")
    sim.add_instance(I3, "audit-north-other", project=P3)
    with sim:
        yield sim


@pytest.fixture
def south(north: FakeDbss) -> Iterator[FakeDbss]:
    """Another regional endpoint of the same account: it was given no credentials of its own."""
    sim = FakeDbss(project_id=P2, region="ap-southeast-1", tokens=(), cloud=north.cloud)
    sim.add_instance(I2, "audit-south")
    with sim:
        yield sim


def client(sim: FakeDbss, auth: httpx.Auth | None = None, token: str | None = "good-token") -> httpx.Client:
    headers = {"Content-Type": "application/json"}
    if auth is None and token is not None:
        headers["X-Auth-Token"] = token
    return httpx.Client(base_url=sim.url, auth=auth, headers=headers, timeout=5)


def listed(http: httpx.Client, project: str) -> httpx.Response:
    return http.get(f"/v2/{project}/audit/instances", params={"offset": "0", "limit": "100"})


def reboot(http: httpx.Client, project: str, instance_id: str) -> httpx.Response:
    return http.post(f"/v1/{project}/audit/instance/reboot", content=json.dumps({"instance_id": instance_id}))


@pytest.fixture
def iam_login(north: FakeDbss) -> Iterator[Callable[[str], IamPasswordAuth]]:
    """Password logins for a project, all through `north`'s IAM (the one global IAM endpoint)."""
    made: list[IamPasswordAuth] = []

    def login(project: str) -> IamPasswordAuth:
        auth = IamPasswordAuth(
            iam_client=httpx.Client(base_url=north.url, timeout=5),
            domain=USER[0],
            user=USER[1],
            password=PASSWORD,
            project_id=project,
        )
        made.append(auth)
        return auth

    yield login
    for auth in made:
        auth.close()


def test_default_constructor_serves_one_project_in_cn_north_4() -> None:
    """Without arguments the simulator is what it always was: one project, its instances in cn-north-4."""
    sim = FakeDbss()
    instance = sim.add_instance(I1)
    assert sim.projects == {sim.project_id: "cn-north-4"}
    assert (instance.project_id, instance.region) == (sim.project_id, "cn-north-4")


def test_each_project_lists_only_its_own_instances_in_its_region(north: FakeDbss, south: FakeDbss) -> None:
    """An endpoint lists a project's instances and no other's; an instance's region is its project's."""
    with client(north) as http_north, client(south) as http_south:
        p1, p3, p2 = listed(http_north, P1).json(), listed(http_north, P3).json(), listed(http_south, P2).json()
    assert [(i["id"], i["region"]) for i in p1["instances"]] == [(I1, "cn-north-4")] and p1["total"] == 1
    assert [i["id"] for i in p3["instances"]] == [I3] and p3["total"] == 1
    assert [(i["id"], i["region"]) for i in p2["instances"]] == [(I2, "ap-southeast-1")]


def test_rebooting_another_projects_instance_answers_as_an_unknown_instance(north: FakeDbss) -> None:
    """Through project P3's path, P1's instance does not exist: 400 DBSS.10020021, and it is not rebooted."""
    with client(north) as http:
        wrong = reboot(http, P3, I1)
        unknown = reboot(http, P3, "f" * 32)
        right = reboot(http, P1, I1)
    assert wrong.status_code == unknown.status_code == 400
    assert (
        wrong.json()
        == unknown.json()
        == {"error": {"error_code": "DBSS.10020021", "error_msg": "Invalid request parameter ID."}}
    )
    assert right.json() == {"result": "success"}
    assert north.reboots_done == [I1] and north.instances[I3].task == "NO_TASK"


def test_a_project_this_endpoint_does_not_serve_answers_apigw_0310(north: FakeDbss, south: FakeDbss) -> None:
    """An unknown project, and another region's project on this endpoint, are unavailable (403 APIGW.0310)."""
    with client(north) as http:
        answers = [listed(http, "9" * 32), listed(http, P2), reboot(http, P2, I2)]
    assert [(a.status_code, a.json()["error_code"]) for a in answers] == [(403, "APIGW.0310")] * 3


def test_add_project_refuses_to_move_a_project_to_another_region(north: FakeDbss, south: FakeDbss) -> None:
    """A project belongs to one region across the whole cloud."""
    with pytest.raises(ValueError, match="ap-southeast-1"):
        north.add_project(P2, "cn-north-4")
    north.add_project(P2, "ap-southeast-1")  # the same region is fine: an endpoint override serving it
    assert north.projects[P2] == "ap-southeast-1"


def test_a_token_from_the_global_iam_works_on_every_endpoint_serving_its_project(
    north: FakeDbss, south: FakeDbss, iam_login: Callable[[str], IamPasswordAuth]
) -> None:
    """Logging in through one simulator's IAM gives a P2 token the other endpoint accepts; logins are counted
    per project and in total, the same on both simulators."""
    auth = iam_login(P2)
    with client(south, auth) as http:
        assert [i["id"] for i in listed(http, P2).json()["instances"]] == [I2]
        assert reboot(http, P2, I2).json() == {"result": "success"}
    [login] = north.requests_to("/v3/auth/tokens")
    assert login.json["auth"]["scope"] == {"project": {"id": P2}}
    assert south.logins == north.logins == 1 and south.logins_by_project == {P2: 1}
    assert south.requests_to("/v3/auth/tokens") == []


def test_iam_names_the_projects_region_and_refuses_an_unknown_project(
    north: FakeDbss, south: FakeDbss, iam_login: Callable[[str], IamPasswordAuth]
) -> None:
    """IAM's token body names the project by its region's ID; a login for a project no endpoint serves is 401."""
    with httpx.Client(base_url=north.url, timeout=5) as http:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"domain": {"name": USER[0]}, "name": USER[1], "password": PASSWORD}},
                },
                "scope": {"project": {"id": P2}},
            }
        }
        answer = http.post("/v3/auth/tokens", json=body)
    assert answer.status_code == 201 and answer.json()["token"]["project"] == {"id": P2, "name": "ap-southeast-1"}
    with pytest.raises(IamLoginError) as refused:
        iam_login("9" * 32).token()
    assert refused.value.status_code == 401
    assert north.logins_by_project == {P2: 1}


def test_a_token_scoped_to_another_project_is_refused_with_apigw_0307(
    north: FakeDbss, south: FakeDbss, iam_login: Callable[[str], IamPasswordAuth]
) -> None:
    """A P1 token on P3's path (same endpoint) and on P2's (other region) is 401 APIGW.0307; the client logs in
    once more on that answer, as it does for an expired token, and is refused again."""
    p1_token = iam_login(P1).token()
    with client(north, token=p1_token) as http:
        assert listed(http, P1).status_code == 200
        mismatch = listed(http, P3)
    assert (mismatch.status_code, mismatch.json()["error_code"]) == (401, "APIGW.0307")
    auth = iam_login(P1)
    with client(south, auth) as http:
        refused = reboot(http, P2, I2)
    assert (refused.status_code, refused.json()["error_code"]) == (401, "APIGW.0307")
    assert north.logins_by_project == {P1: 3} and south.reboots_done == []


def test_aksk_pairs_are_shared_and_x_project_id_scopes_the_signature(north: FakeDbss, south: FakeDbss) -> None:
    """The account's AK/SK signs for every endpoint; X-Project-Id naming another project than the path is
    refused like a token of another project."""
    with client(south, AkSkAuth(access_key=AK, secret_key=SK, project_id=P2)) as http:
        assert reboot(http, P2, I2).json() == {"result": "success"}
    with client(south, AkSkAuth(access_key=AK, secret_key=SK, project_id=P1)) as http:
        mismatch = listed(http, P2)
    assert (mismatch.status_code, mismatch.json()["error_code"]) == (401, "APIGW.0307")
    assert south.reboot_requests()[0].headers["x-project-id"] == P2


def test_temporary_keys_from_one_metadata_service_work_on_another_endpoint(north: FakeDbss, south: FakeDbss) -> None:
    """A temporary key fetched from `north`'s metadata service signs for `south`; expiring them expires it there."""
    with httpx.Client(base_url=north.url, timeout=5) as metadata:
        credential = metadata.get("/openstack/latest/securitykey").json()["credential"]
    auth = AkSkAuth(
        access_key=credential["access"],
        secret_key=credential["secret"],
        security_token=credential["securitytoken"],
        project_id=P2,
    )
    with client(south, auth) as http:
        assert listed(http, P2).status_code == 200
        north.expire_temporary_keys()
        expired = listed(http, P2)
    assert (expired.status_code, expired.json()["error_code"]) == (401, "APIGW.0307")


def test_a_project_can_be_down_while_the_others_answer(north: FakeDbss, south: FakeDbss) -> None:
    """An outage answers every list and reboot of its project (or drops the connection); lifting it restores it."""
    south.outages[P2] = south.gateway_error(502, "APIGW.0610", "No backend available")
    north.outages[P3] = None
    with client(north) as http_north, client(south) as http_south:
        first, second = listed(http_south, P2), reboot(http_south, P2, I2)
        assert [(a.status_code, a.json()["error_code"]) for a in (first, second)] == [(502, "APIGW.0610")] * 2
        assert first.headers["x-request-id"] == first.json()["request_id"]
        with pytest.raises(httpx.RemoteProtocolError):
            listed(http_north, P3)
        assert reboot(http_north, P1, I1).json() == {"result": "success"}
        del south.outages[P2]
        assert listed(http_south, P2).status_code == 200
    assert south.reboots_done == [] and north.reboots_done == [I1]


def test_scripted_answers_and_delays_per_project(north: FakeDbss) -> None:
    """A project's scripted answer and delay touch only its own calls; route-wide ones still apply to all."""
    north.script(
        "reboot", north.gateway_error(429, "APIGW.0308", "The throttling threshold has been reached"), project=P3
    )
    north.script("list", None)
    north.delays[(P3, "list")] = 0.6
    with client(north) as http:
        assert reboot(http, P1, I1).status_code == 200
        assert reboot(http, P3, I3).status_code == 429
        assert reboot(http, P3, I3).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            listed(http, P1)
        started = time.monotonic()
        assert listed(http, P1).status_code == 200
        fast = time.monotonic() - started
        started = time.monotonic()
        assert listed(http, P3).status_code == 200
        slow = time.monotonic() - started
    assert slow >= 0.6 > fast


def test_recorded_requests_filter_by_project(north: FakeDbss) -> None:
    """reboot_requests() and list_requests() give every call, or one project's with project=."""
    with client(north) as http:
        reboot(http, P1, I1)
        reboot(http, P3, I3)
        listed(http, P3)
    assert len(north.reboot_requests()) == 2
    assert [r.json["instance_id"] for r in north.reboot_requests(project=P3)] == [I3]
    assert north.list_requests(project=P1) == [] and len(north.list_requests(project=P3)) == 1
