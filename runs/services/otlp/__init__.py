"""OpenTelemetry ingest: OTLP/HTTP trace exports (POST /v1/traces) stored as runs and events.

decode.py     bodies and spans (opentelemetry-proto message classes), limits, responses
dialect.py    the interface every dialect implements: a span in, its facts out
genai.py      the GenAI semantic conventions (gen_ai.*), the fallback dialect
openinference.py  OpenInference (openinference.span.kind, llm.*, tool.*)
assemble.py   a trace's spans to runs and events (pure; order- and replay-proof)
receiver.py   one request: check, group by trace, store through OtlpTrace.objects.store
"""
