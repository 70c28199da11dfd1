"""The Hugging Face Hub round trip: check where a push goes before the work, and publish a folder of files.

Chapter 03 publishes the processed dataset, chapter 04 the LoRA adapter. The token comes from ``HF_TOKEN`` or the
cached login (``huggingface_hub``'s own lookup) and is never printed or written. A failed upload raises
:class:`HubPushError`, whose message says that the files are safe on disk and how to push them later.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class HubPushError(RuntimeError):
    """An upload to the Hugging Face Hub failed; the files are still on disk."""


def check_hub_access(repo_id: str, token: str | None = None, *, parameter: str = "hub_model_id") -> str:
    """Before the work: ``repo_id`` is a valid ``owner/name`` and the token is accepted. Returns the account name;
    raises ValueError (the id) or PermissionError (the token) naming the fix."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"{parameter} {repo_id!r} is not a valid repository id ({err}); use 'your-name/name'") \
            from None
    if "/" not in repo_id:
        raise ValueError(f"{parameter} {repo_id!r} needs its owner: 'your-name/{repo_id}'")
    try:
        return HfApi(token=token).whoami()["name"]
    except Exception as err:  # noqa: BLE001 - no token, a revoked one, no network: the same advice
        raise PermissionError(f"cannot push to {repo_id}: the Hugging Face Hub did not accept a token "
                              f"({type(err).__name__}). Set HF_TOKEN (Colab: the secret HF_TOKEN, write access), "
                              "or turn push_to_hub off and push later (the message of a failed push says how).") \
            from None


def publish_folder(folder: str | os.PathLike, repo_id: str, *, repo_type: str, files: Sequence[str] | None = None,
                   token: str | None = None, private: bool = True, commit_message: str, later: str) -> str:
    """Create ``repo_id`` (if needed) and upload ``folder`` (only ``files``, patterns, when given); returns the
    repository URL. ``later`` is the call that pushes again, quoted in the error of a failed upload."""
    from huggingface_hub import HfApi

    try:
        api = HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                          allow_patterns=list(files) if files else None, commit_message=commit_message)
    except Exception as err:  # noqa: BLE001 - network, auth, quota: the files are safe either way
        raise HubPushError(f"pushing {folder} to {repo_id} failed ({type(err).__name__}: {str(err)[:300]}). The "
                           f"files are safe on disk in {Path(folder)}. Push them later with {later}") from None
    return str(url)


def is_repo_id(text: str) -> bool:
    """Whether ``text`` reads as a Hub repository id (``owner/name``) rather than a local path."""
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not Path(text).expanduser().exists()


def download_adapter(repo_id: str) -> Path:
    """A LoRA adapter repository on the Hugging Face Hub, downloaded once (``snapshot_download``) into its cache;
    later calls read the cache. Raises FileNotFoundError when the repository holds no adapter."""
    from huggingface_hub import snapshot_download

    if not is_repo_id(repo_id):
        raise FileNotFoundError(f"{repo_id}: neither a local adapter or run folder nor a Hub repository id "
                                "('owner/name')")
    try:
        folder = Path(snapshot_download(repo_id, repo_type="model"))
    except Exception as err:  # noqa: BLE001 - offline, private, no such repository: one message names both readings
        raise FileNotFoundError(f"{repo_id}: no such local folder, and no adapter could be downloaded from the Hub "
                                f"under that id ({type(err).__name__}: {str(err)[:200]})") from None
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"the Hub repository {repo_id} holds no adapter_config.json: not a LoRA adapter")
    return folder
