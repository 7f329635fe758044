"""DBSS_TARGETS and BOT_CHANNEL_TARGETS: many (region, project) pairs from one deployment, validated at start-up."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, Settings, Target, load_settings

P1 = "0f3b0000000000000000000000000001"
P2 = "9c1d0000000000000000000000000002"
P3 = "77770000000000000000000000000003"
AKSK = {"dbss_ak": "AK1", "dbss_sk": "SK1"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DBSS_PROJECT_ID",
        "DBSS_REGION",
        "DBSS_ENDPOINT",
        "DBSS_TARGETS",
        "BOT_CHANNEL_TARGETS",
        "DBSS_AUTH_TOKEN",
        "DBSS_AK",
        "DBSS_SK",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "DBSS_IAM_DOMAIN",
        "DBSS_IAM_USER",
        "DBSS_IAM_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)


def load(**kwargs: object) -> Settings:
    kwargs.setdefault("_secrets_dir", None)
    return load_settings(_env_file=None, **kwargs)


def test_the_single_project_settings_make_one_target() -> None:
    s = load(dbss_project_id=P1, dbss_region="ap-southeast-1", **AKSK)
    assert s.targets == (Target("ap-southeast-1", P1, "https://dbss.ap-southeast-1.myhuaweicloud.com"),)
    assert s.targets[0].label == "ap-southeast-1"
    assert load(dbss_project_id=P1, **AKSK).targets[0].region == "cn-north-4"  # the default region stays


def test_targets_list_regions_projects_and_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DBSS_TARGETS", f" cn-north-4:{P1}, ap-southeast-1:{P2}@https://dbss.ap-southeast-1.example.com ,"
    )
    s = load(**AKSK)
    assert s.targets == (
        Target("cn-north-4", P1, "https://dbss.cn-north-4.myhuaweicloud.com"),
        Target("ap-southeast-1", P2, "https://dbss.ap-southeast-1.example.com"),
    )
    assert [t.key for t in s.targets] == [f"cn-north-4:{P1}", f"ap-southeast-1:{P2}"]
    assert [t.label for t in s.targets] == ["cn-north-4", "ap-southeast-1"]


def test_two_projects_in_one_region_are_told_apart_by_project() -> None:
    s = load(dbss_targets=f"cn-north-4:{P1},cn-north-4:{P2}", **AKSK)
    assert [t.label for t in s.targets] == [f"cn-north-4/{P1}", f"cn-north-4/{P2}"]


def test_one_message_names_every_bad_entry() -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            dbss_targets=f"cn-north-4:{P1},CN_North:{P2},eu-west-0,ap-southeast-1:bad/id,"
            f"ap-southeast-1:{P3}@ftp://x,cn-north-4:{P1}",
            **AKSK,
        )
    message = str(caught.value)
    assert "DBSS_TARGETS" in message
    for bad in (f"'CN_North:{P2}'", "'eu-west-0'", "'ap-southeast-1:bad/id'", f"'ap-southeast-1:{P3}@ftp://x'"):
        assert bad in message, bad
    assert f"'cn-north-4:{P1}' is listed twice" in message
    assert "region:project_id" in message  # what is expected


def test_setting_both_forms_is_an_error() -> None:
    for single in ({"dbss_project_id": P1}, {"dbss_region": "cn-north-4"}, {"dbss_endpoint": "https://x"}):
        with pytest.raises(ConfigError, match=r"DBSS_TARGETS.*or.*not both"):
            load(dbss_targets=f"cn-north-4:{P1}", **single, **AKSK)


def test_neither_form_names_both() -> None:
    with pytest.raises(ConfigError) as caught:
        load(**AKSK)
    assert "DBSS_PROJECT_ID is required" in str(caught.value) and "DBSS_TARGETS" in str(caught.value)


def test_a_static_token_serves_one_project_only() -> None:
    with pytest.raises(ConfigError) as caught:
        load(dbss_targets=f"cn-north-4:{P1},ap-southeast-1:{P2}", dbss_auth_token="tok")
    message = str(caught.value)
    assert "DBSS_AUTH_TOKEN" in message and "one project" in message
    for works in ("DBSS_AK", "DBSS_IAM_PASSWORD", "DBSS_METADATA_CREDENTIALS"):
        assert works in message
    assert "tok" not in message.replace("token", "")
    # one target given as DBSS_TARGETS is fine with a token
    assert load(dbss_targets=f"cn-north-4:{P1}", dbss_auth_token="tok").targets[0].project_id == P1


def test_channel_targets_scope_channels_to_regions() -> None:
    s = load(
        dbss_targets=f"cn-north-4:{P1},ap-southeast-1:{P2},eu-west-0:{P3}",
        bot_channel_targets="CSTAGING=eu-west-0, CPROD=cn-north-4,CPROD=ap-southeast-1",
        **AKSK,
    )
    assert s.channel_targets == {
        "CSTAGING": frozenset({"eu-west-0"}),
        "CPROD": frozenset({"cn-north-4", "ap-southeast-1"}),
    }


def test_channel_targets_must_name_configured_regions() -> None:
    with pytest.raises(ConfigError) as caught:
        load(dbss_targets=f"cn-north-4:{P1}", bot_channel_targets="CPROD=cn-north-4,CSTAGING=eu-west-0,oops", **AKSK)
    message = str(caught.value)
    assert "BOT_CHANNEL_TARGETS" in message
    assert "'CSTAGING=eu-west-0'" in message and "'oops'" in message
    assert "'CPROD=cn-north-4'" not in message


def test_blank_targets_are_unset_and_an_endpoint_needs_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blank line in a ConfigMap is no targets; `@https://` with no host is named; the single-project variable
    named in the clash is the one actually set."""
    s = load(dbss_project_id=P1, dbss_targets="  ", bot_channel_targets="", **AKSK)
    assert [t.project_id for t in s.targets] == [P1] and s.channel_targets == {}
    with pytest.raises(ConfigError, match=r"'ap-southeast-1:[0-9a-f]+@https://': the endpoint after @"):
        load(dbss_targets=f"ap-southeast-1:{P2}@https://", **AKSK)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", P1)
    clash = r"or DBSS_PROJECT_ID \(or HUAWEICLOUD_SDK_PROJECT_ID\) \(one project\), not both"
    with pytest.raises(ConfigError, match=clash):
        load(dbss_targets=f"cn-north-4:{P2}", **AKSK)
