from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0006_run_counts"),
    ]

    operations = [
        migrations.CreateModel(
            name="OtlpTrace",
            fields=[
                (
                    "trace_id",
                    models.CharField(max_length=32, primary_key=True, serialize=False),
                ),
                ("run_ids", models.JSONField(blank=True, default=list)),
                ("updated_at", models.DateTimeField()),
            ],
            options={"db_table": "otlp_traces"},
        ),
        migrations.CreateModel(
            name="OtlpSpan",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("trace_id", models.CharField(max_length=32)),
                ("span_id", models.CharField(max_length=16)),
                ("data", models.BinaryField()),
            ],
            options={
                "db_table": "otlp_spans",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("trace_id", "span_id"), name="otlp_spans_trace_span"
                    )
                ],
            },
        ),
    ]
