"""The two staff roles. Applied by a data migration; later migrations extend the permission lists."""

ADMINISTRATORS = "Administrators"
AUDITORS = "Auditors"

# (app_label, model) -> actions
ROLE_PERMISSIONS = {
    ADMINISTRATORS: {
        ("providers", "providerconfig"): ("add", "change", "delete", "view"),
        ("providers", "clientkey"): ("add", "change", "delete", "view"),
        ("providers", "requestlog"): ("view",),
        ("providers", "attempt"): ("view",),
    },
    AUDITORS: {
        ("providers", "requestlog"): ("view",),
        ("providers", "attempt"): ("view",),
    },
}


def ensure_roles(apps, extra: dict | None = None) -> None:
    """Create the groups and grant their permissions; safe to run again."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    roles = {name: dict(perms) for name, perms in ROLE_PERMISSIONS.items()}
    for name, perms in (extra or {}).items():
        roles.setdefault(name, {}).update(perms)
    for name, perms in roles.items():
        group, _ = Group.objects.get_or_create(name=name)
        for (app_label, model), actions in perms.items():
            codenames = [f"{action}_{model}" for action in actions]
            group.permissions.add(
                *Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
            )
