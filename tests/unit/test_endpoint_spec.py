"""Endpoint specs, provider inference, comparison and id derivation."""

from __future__ import annotations

import pytest

from es_inference import ConfigurationError
from es_inference._endpoint import (
    EndpointSpec,
    bedrock_spec,
    build_spec,
    derive_inference_id,
    differences,
    infer_provider,
)
from es_inference._wire import EndpointInfo


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("amazon.titan-embed-text-v2:0", "amazontitan"),
        ("cohere.embed-english-v3", "cohere"),
        ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic"),
        ("ai21.jamba-1-5-mini-v1:0", "ai21labs"),
        ("meta.llama3-8b-instruct-v1:0", "meta"),
        ("mistral.mistral-7b-instruct-v0:2", "mistral"),
        ("us.anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic"),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v1",
            "amazontitan",
        ),
    ],
)
def test_provider_is_inferred_from_model_id(model: str, provider: str) -> None:
    assert infer_provider(model) == provider


def test_unknown_provider_prefix_asks_for_provider() -> None:
    with pytest.raises(ConfigurationError, match="pass provider="):
        infer_provider("acme.model-1")


def test_bedrock_spec_reads_aws_environment_and_merges_settings() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "AKIDENV",
        "AWS_SECRET_ACCESS_KEY": "secretenv",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    spec = bedrock_spec(
        "text_embedding",
        model="amazon.titan-embed-text-v2:0",
        service_settings={"rate_limit": {"requests_per_minute": 100}},
        env=env,
    )
    assert spec.service_settings == {
        "model": "amazon.titan-embed-text-v2:0",
        "provider": "amazontitan",
        "region": "eu-west-1",
        "rate_limit": {"requests_per_minute": 100},
    }
    body = spec.create_body()
    assert body["service_settings"]["access_key"] == "AKIDENV"
    assert "AKIDENV" not in repr(spec)
    assert "secretenv" not in repr(spec)


def test_provider_task_matrix_is_checked_before_sending() -> None:
    with pytest.raises(ConfigurationError, match="does not offer text_embedding"):
        bedrock_spec("text_embedding", model="anthropic.claude-v2", env={})


def test_keys_are_refused_inside_service_settings() -> None:
    with pytest.raises(ConfigurationError, match="aws_access_key_id"):
        bedrock_spec(
            "text_embedding",
            model="amazon.titan-embed-text-v2:0",
            service_settings={"access_key": "x"},
            env={},
        )


def test_only_an_id_means_use_existing() -> None:
    spec = build_spec("text_embedding", inference_id="existing")
    assert not spec.can_create
    with pytest.raises(ConfigurationError, match="inference_id of an existing"):
        build_spec("text_embedding")


def test_derived_ids_are_valid_readable_and_bounded() -> None:
    spec = bedrock_spec(
        "text_embedding",
        model="amazon.titan-embed-text-v2:0",
        region="us-east-1",
        env={},
    )
    assert derive_inference_id(spec) == (
        "amazonbedrock-text-embedding-amazon-titan-embed-text-v2-0-us-east-1"
    )
    long = bedrock_spec(
        "completion",
        model="arn:aws:bedrock:us-east-1:123456789012:provisioned-model/" + "x" * 200,
        provider="anthropic",
        region="us-east-1",
        env={},
    )
    derived = derive_inference_id(long)
    assert len(derived) <= 96
    assert derived != derive_inference_id(spec)


def _info(**settings: object) -> EndpointInfo:
    return EndpointInfo(
        inference_id="e",
        task_type="text_embedding",
        service="amazonbedrock",
        service_settings={
            "model": "amazon.titan-embed-text-v2:0",
            "provider": "AMAZONTITAN",
            "region": "us-east-1",
            "rate_limit": {"requests_per_minute": 240},
            "dimensions": 256,
            **settings,
        },
        task_settings={},
        chunking_settings=None,
    )


def test_differences_compare_provider_case_insensitively() -> None:
    spec = bedrock_spec(
        "text_embedding",
        model="amazon.titan-embed-text-v2:0",
        region="us-east-1",
        env={},
    )
    assert differences(spec, _info()) == []


def test_differences_name_each_field_with_both_values() -> None:
    spec = bedrock_spec(
        "text_embedding",
        model="amazon.titan-embed-text-v1",
        region="us-west-2",
        service_settings={"rate_limit": {"requests_per_minute": 100}},
        env={},
    )
    assert differences(spec, _info()) == [
        (
            "service_settings.model",
            "amazon.titan-embed-text-v1",
            "amazon.titan-embed-text-v2:0",
        ),
        ("service_settings.region", "us-west-2", "us-east-1"),
        (
            "service_settings.rate_limit",
            {"requests_per_minute": 100},
            {"requests_per_minute": 240},
        ),
    ]


def test_existing_only_spec_checks_task_type_alone() -> None:
    spec = EndpointSpec(task_type="completion", inference_id="e")
    assert differences(spec, _info()) == [("task_type", "completion", "text_embedding")]
