"""What the log tests share: an auditor logged in to the admin of the live server."""

from django.apps import apps
from django.contrib.auth.models import Group, User
from django.test import Client

from providers.roles import AUDITORS, ensure_roles


def auditor_session() -> str:
    """The session cookie of a new staff user in the Auditors group."""
    ensure_roles(apps)
    user = User.objects.create_user("auditor", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=AUDITORS))
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value
