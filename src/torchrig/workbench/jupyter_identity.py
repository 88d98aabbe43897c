"""JupyterLab's identity provider in the workbench: jupyter_server's own, with two changes.

    --ServerApp.identity_provider_class=torchrig.workbench.jupyter_identity.GuardedIdentityProvider

Runs inside the image only (jupyter_server comes from the lock). A supported extension point
(jupyter_server.auth.IdentityProvider, "Identity Providers" in jupyter_server's docs):

1. The Origin check applies to token-authenticated requests too. jupyter_server skips it
   for them (`should_check_origin`) and, without allow_origin, echoes any Origin back in
   Access-Control-Allow-Origin: a page on evil.com that holds the token could drive the API
   and the kernel websockets. Now a foreign Origin gets 404 on the API and 403 on a
   websocket, whatever it carries; requests without an Origin (scripts, curl, IDEs) pass.
2. Wrong tokens are throttled per source address (jupyter_guard.FailureThrottle): the URL's
   `?token=`, the Authorization header and the /login form alike.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

from jupyter_server.auth.identity import PasswordIdentityProvider

from torchrig.workbench.jupyter_guard import REFUSED_DELAY_S, FailureThrottle

THROTTLE = FailureThrottle()


def _source(handler: Any) -> str:
    # The peer address (trust_xheaders stays off: X-Forwarded-For is not believed).
    return str(getattr(handler.request, "remote_ip", "") or "?")


class GuardedIdentityProvider(PasswordIdentityProvider):  # type: ignore[misc]
    def should_check_origin(self, handler: Any) -> bool:
        return True

    def _refused(self, source: str) -> bool:
        wait = THROTTLE.blocked_for(source, time.monotonic())
        if wait > 0:
            # Debug only: a flood would write a line per request; the block's start is logged.
            self.log.debug(
                "Refusing a token from %s without checking it: too many wrong tokens "
                "(again in %.0f s)",
                source,
                wait,
            )
        return wait > 0

    def _failed(self, source: str) -> None:
        if THROTTLE.failed(source, time.monotonic()):
            self.log.warning(
                "%d wrong tokens from %s within %.0f s: its tokens are refused unchecked "
                "for up to %.0f s",
                THROTTLE.free_failures,
                source,
                THROTTLE.window_s,
                THROTTLE.window_s,
            )

    async def get_user_token(self, handler: Any) -> Any:
        presented = self.get_token(handler)
        if not presented or not self.token:
            return await super().get_user_token(handler)
        source = _source(handler)
        if self._refused(source):
            await asyncio.sleep(REFUSED_DELAY_S)
            return None
        if not hmac.compare_digest(str(presented).encode(), str(self.token).encode()):
            self._failed(source)
            return None
        return await super().get_user_token(handler)

    def process_login_form(self, handler: Any) -> Any:
        typed = handler.get_argument("password", default="")
        if not typed or not self.auth_enabled:
            return super().process_login_form(handler)
        source = _source(handler)
        if self._refused(source):
            return None  # a sync handler: no delay here, the refusal is enough
        user = super().process_login_form(handler)
        if user is None:
            self._failed(source)
        return user
