"""The model price table (runs.models.ModelPrice): list prices per million tokens, by date.

Costs are computed from it when read (runs.costs), so nothing else changes here; the
shipped prices are loaded by ``manage.py load_prices`` (``make run`` does it), not by
this migration, so a site's own edits are never overwritten by a migrate.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("runs", "0012_stats_buckets")]

    operations = [
        migrations.CreateModel(
            name="ModelPrice",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("model", models.CharField(max_length=255)),
                ("provider", models.CharField(blank=True, default="", max_length=100)),
                ("input_per_million", models.DecimalField(decimal_places=6, max_digits=14)),
                ("output_per_million", models.DecimalField(decimal_places=6, max_digits=14)),
                (
                    "cached_input_per_million",
                    models.DecimalField(blank=True, decimal_places=6, max_digits=14, null=True),
                ),
                (
                    "thinking_per_million",
                    models.DecimalField(blank=True, decimal_places=6, max_digits=14, null=True),
                ),
                ("currency", models.CharField(default="USD", max_length=3)),
                ("valid_from", models.DateTimeField()),
                ("note", models.CharField(blank=True, default="", max_length=500)),
            ],
            options={
                "db_table": "model_prices",
                "ordering": ["model", "provider", "-valid_from"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("model", "provider", "valid_from"), name="model_prices_model_from"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("input_per_million__gte", 0),
                            ("output_per_million__gte", 0),
                            models.Q(
                                ("cached_input_per_million__isnull", True),
                                ("cached_input_per_million__gte", 0),
                                _connector="OR",
                            ),
                            models.Q(
                                ("thinking_per_million__isnull", True),
                                ("thinking_per_million__gte", 0),
                                _connector="OR",
                            ),
                        ),
                        name="model_prices_not_negative",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("model", ""), _negated=True),
                        name="model_prices_model_named",
                    ),
                ],
            },
        ),
    ]
