"""The unmodified pasqal-cloud SDK, configured as a user configures it: the one client `tweezer
demo`, `tweezer load` and the tests drive a cluster with."""

from __future__ import annotations

from typing import Any


def sdk_client(
    core_url: str, account_url: str, project_id: str, token: str, webhook: str | None = None
) -> Any:
    """The SDK as a user configures it: a project, an API token, and the `webhook` its batches
    name. (Called before any thread starts: warnings' filters are process-wide.)"""
    import warnings

    from pasqal_cloud.authentication import TokenProvider
    from pasqal_cloud.endpoints import Endpoints

    with warnings.catch_warnings():
        # The SDK's package imports deprecated modules of its own.
        warnings.simplefilter("ignore", DeprecationWarning)
        from pasqal_cloud import SDK

        class StaticToken(TokenProvider):
            def get_token(self) -> str:
                return token

        return SDK(
            project_id=project_id,
            token_provider=StaticToken(),
            endpoints=Endpoints(core=core_url, account=account_url),
            webhook=webhook,
        )
