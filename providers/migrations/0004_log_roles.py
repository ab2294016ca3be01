from django.db import migrations


def grant_log_views(apps, schema_editor):
    from providers.roles import ensure_roles

    ensure_roles(apps)


class Migration(migrations.Migration):
    dependencies = [("providers", "0003_request_logs")]

    operations = [migrations.RunPython(grant_log_views, migrations.RunPython.noop)]
