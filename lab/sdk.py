"""The unmodified pasqal-cloud SDK, configured as a user configures it: the one client `tweezer
demo`, `tweezer load` and the tests drive a cluster with.

Imported only by the lab's commands, and imports the SDK at once: a command run without the
`lab` extra stops before it changes anything (`tweezer load` provisions accounts first)."""

from __future__ import annotations

import warnings
from typing import Any

from pasqal_cloud.authentication import TokenProvider
from pasqal_cloud.endpoints import Endpoints

with warnings.catch_warnings():
    # The SDK's package imports deprecated modules of its own.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pasqal_cloud import SDK


def sdk_client(
    core_url: str, account_url: str, project_id: str, token: str, webhook: str | None = None
) -> Any:
    """The SDK as a user configures it: a project, an API token, and the `webhook` its batches
    name. Made before any client thread starts: the SDK warns of its own deprecations here,
    and warnings' filters are the whole process's."""

    class StaticToken(TokenProvider):
        def get_token(self) -> str:
            return token

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return SDK(
            project_id=project_id,
            token_provider=StaticToken(),
            endpoints=Endpoints(core=core_url, account=account_url),
            webhook=webhook,
        )
