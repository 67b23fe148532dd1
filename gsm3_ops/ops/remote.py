"""A deployment's object-storage publish root: each day is published atomically into the
local mirror (``publish_root``), then its files are uploaded to ``publish_remote`` in a
reader-safe order (``publish/remote.py``); an upload a killed or failed run left is finished
by the next run before anything else.
"""

from __future__ import annotations

import logging

from gsm3_ops.config import Settings
from gsm3_ops.errors import PublishError
from gsm3_ops.publish.day import LATEST_NAME, Published
from gsm3_ops.publish.manifest import failure_path
from gsm3_ops.publish.remote import RemoteRoot, mirror, pending, resume, sync_all

log = logging.getLogger(__name__)


def remote_root(settings: Settings) -> RemoteRoot | None:
    """The deployment's remote publish root, or None when it publishes to a folder only."""
    if settings.publish_remote is None:
        return None
    return RemoteRoot(settings.publish_remote, settings.publish_options)


def finish_uploads(settings: Settings) -> None:
    """Finish the uploads a previous run left (PublishError if they still fail)."""
    remote = remote_root(settings)
    if remote is not None and pending(settings.publish_root):
        count = resume(settings.publish_root, remote)
        log.info("finished %d upload(s) to %s left by an earlier run", count, remote.url)


def upload_day(settings: Settings, published: Published) -> None:
    """Upload what publishing ``published`` changed; the whole mirror to a remote that holds
    no publication yet (a new bucket). Raises PublishError naming the day and the remote."""
    remote = remote_root(settings)
    if remote is None:
        return
    # the day's failure record (removed locally once it is published) goes too, if uploaded
    failed = str(failure_path(settings.publish_root, published.day).relative_to(
        settings.publish_root))  # fmt: skip
    try:
        if remote.exists(LATEST_NAME):
            mirror(settings.publish_root, remote, published.changed, [*published.removed, failed])
        else:
            count = sync_all(settings.publish_root, remote)
            log.info("%s held no publication: uploaded all %d files", remote.url, count)
    except PublishError as exc:
        raise PublishError(
            f"{published.day} is published locally, but uploading it failed (the next run "
            f"finishes the upload): {exc}"
        ) from exc
