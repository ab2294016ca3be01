from ninja import Router

from providers.auth import ClientKeyAuth
from providers.models import SCOPE_USE

router = Router(tags=["audio"], auth=ClientKeyAuth(SCOPE_USE))
