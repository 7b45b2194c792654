"""This host's bare cache of a run's repository: where every role's worktree slots come from."""

from __future__ import annotations

from orchestrator.config.secrets import register_secret, url_credentials
from orchestrator.config.settings import CadreSettings
from orchestrator.git.cache import BareCache
from orchestrator.git.workspace import prepare_cache
from orchestrator.state.models import Run
from orchestrator.state.store import Store


def repository_cache(store: Store, settings: CadreSettings, run: Run) -> BareCache:
    """This host's bare cache of the run's repository, created if needed and freshly fetched.

    Credentials in the repository URL are used for git's network commands only: the cache's config
    holds the URL redacted, and this process masks them in everything it logs or shows.
    """
    url = store.runs.repo_url(run)
    register_secret(*url_credentials(url))
    return prepare_cache(settings.data_dir, url)
