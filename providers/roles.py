"""The two staff roles and their permissions, the one list of who may see and change what in the admin.

Migrations call :func:`ensure_roles` whenever a model joins the list (0002 for configs and keys,
0004 for the request logs, 0007 for routes); it is safe to run again, so a role only ever gains what is listed here.
"""

ADMINISTRATORS = "Administrators"
AUDITORS = "Auditors"

# (app_label, model) -> actions
ROLE_PERMISSIONS = {
    ADMINISTRATORS: {
        ("providers", "providerconfig"): ("add", "change", "delete", "view"),
        ("providers", "clientkey"): ("add", "change", "delete", "view"),
        ("providers", "route"): ("add", "change", "delete", "view"),
        ("providers", "routeentry"): ("add", "change", "delete", "view"),
        ("providers", "requestlog"): ("view",),
        ("providers", "attempt"): ("view",),
    },
    AUDITORS: {
        ("providers", "requestlog"): ("view",),
        ("providers", "attempt"): ("view",),
    },
}


def ensure_roles(apps) -> None:
    """Create the groups and grant their permissions; safe to run again."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for (app_label, model), actions in perms.items():
            codenames = [f"{action}_{model}" for action in actions]
            group.permissions.add(
                *Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
            )
