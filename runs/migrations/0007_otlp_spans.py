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
                ("spans", models.BinaryField()),
                ("span_count", models.IntegerField(default=0)),
                ("run_ids", models.JSONField(blank=True, default=list)),
                ("updated_at", models.DateTimeField()),
            ],
            options={"db_table": "otlp_traces"},
        ),
    ]
