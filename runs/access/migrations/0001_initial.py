"""API tokens as salted SHA-256 digests; DRF's plain tokens (authtoken_token) hashed and moved
here, then that table dropped, so no key stays readable in the database.

Every migrated key keeps working: its digest is made from the key as it was. Going back is
not possible (the keys are gone), so the reverse only drops the new table.
"""

import hashlib
import secrets

from django.conf import settings
from django.db import migrations, models

OLD_TABLE = "authtoken_token"


def hash_plain_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if OLD_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("access", "ApiToken")
    quoted = schema_editor.quote_name(OLD_TABLE)
    columns = ", ".join(schema_editor.quote_name(c) for c in ("key", "user_id", "created"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {quoted}")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        salt = secrets.token_hex(16)
        token = ApiToken.objects.create(
            user_id=user_id,
            prefix=key[:8],
            salt=salt,
            digest=hashlib.sha256((salt + key).encode()).hexdigest(),
        )
        # auto_now_add set "now" on create; keep when the key was really made.
        ApiToken.objects.filter(pk=token.pk).update(created=created)
    schema_editor.execute(f"DROP TABLE {quoted}")


class Migration(migrations.Migration):
    initial = True

    dependencies = [migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [
        migrations.CreateModel(
            name="ApiToken",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("prefix", models.CharField(db_index=True, editable=False, max_length=8)),
                ("salt", models.CharField(editable=False, max_length=32)),
                ("digest", models.CharField(editable=False, max_length=64)),
                ("created", models.DateTimeField(auto_now_add=True)),
                (
                    "user",
                    models.OneToOneField(
                        on_delete=models.deletion.CASCADE,
                        related_name="api_token",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"db_table": "api_tokens", "verbose_name": "API token"},
        ),
        migrations.RunPython(hash_plain_tokens, migrations.RunPython.noop),
    ]
