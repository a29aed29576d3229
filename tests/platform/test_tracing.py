"""Tracing's settings, and nothing of it set up without an endpoint (tests/e2e has the trace of
a checkout)."""

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from bazaar.platform import tracing
from bazaar.platform.settings import Env, SettingsError, TracingSettings
from bazaar.platform.web import RequestContext
from bazaar.runtime.embedded import Runtime


def settings(**environ: str) -> TracingSettings:
    return TracingSettings.from_env(Env(environ))


def test_no_endpoint_is_no_tracing() -> None:
    assert settings() == TracingSettings(endpoint=None)
    assert settings(OTEL_TRACES_SAMPLER="always_off").endpoint is None


@pytest.mark.parametrize(
    ("environ", "endpoint"),
    [
        ({"BAZAAR_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"),
        ({"BAZAAR_OTLP_ENDPOINT": "http://c:4318/v1/traces"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318/"}, "https://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/traces"}, "http://c/traces"),
        (
            {"BAZAAR_OTLP_ENDPOINT": "http://ours:4318", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"},
            "http://ours:4318/v1/traces",
        ),
        ({"BAZAAR_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
    ],
)
def test_the_endpoint_comes_from_bazaar_or_the_standard_variables(
    environ: dict[str, str], endpoint: str | None
) -> None:
    assert settings(**environ).endpoint == endpoint


@pytest.mark.parametrize(
    ("environ", "ratio"),
    [
        ({}, 1.0),
        ({"BAZAAR_TRACE_SAMPLE_RATIO": "0.01"}, 0.01),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
            0.25,
        ),
        ({"OTEL_TRACES_SAMPLER": "traceidratio"}, 1.0),
        ({"OTEL_TRACES_SAMPLER": "always_off", "OTEL_TRACES_SAMPLER_ARG": "0.5"}, 0.0),
        ({"BAZAAR_TRACE_SAMPLE_RATIO": "0", "OTEL_TRACES_SAMPLER": "always_on"}, 0.0),
    ],
)
def test_the_sample_ratio(environ: dict[str, str], ratio: float) -> None:
    assert settings(BAZAAR_OTLP_ENDPOINT="http://c:4318", **environ).sample_ratio == ratio


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"BAZAAR_OTLP_ENDPOINT": "grpc://c:4317"}, "BAZAAR_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"BAZAAR_TRACE_SAMPLE_RATIO": "1.5"}, "BAZAAR_TRACE_SAMPLE_RATIO"),
        ({"BAZAAR_TRACE_SAMPLE_RATIO": "most"}, "BAZAAR_TRACE_SAMPLE_RATIO"),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
    ],
)
def test_a_bad_value_fails_naming_its_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as failure:
        settings(**environ)
    assert failure.value.variable == variable
    assert str(failure.value).startswith(f"{variable}: ")


async def test_without_an_endpoint_no_tracer_provider_is_installed(runtime: Runtime) -> None:
    assert runtime.settings.platform.tracing.endpoint is None
    assert runtime.tracing is None and tracing.active() is None
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    assert not RedisInstrumentor().is_instrumented_by_opentelemetry
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    app = runtime.app()
    assert isinstance(app, RequestContext)
    assert not isinstance(app.app, OpenTelemetryMiddleware)
    assert not isinstance(getattr(app.app, "app", None), OpenTelemetryMiddleware)
    # the events a request writes still carry its trace context, for the logs
    token = tracing.traceparent_var.set("00-" + "ab" * 16 + "-" + "cd" * 8 + "-01")
    try:
        assert tracing.current_traceparent() == "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    finally:
        tracing.traceparent_var.reset(token)
