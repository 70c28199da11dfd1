"""The Hub helpers without a network: what reads as a repository id, an adapter downloaded by id (a local stand-in
for huggingface_hub's download), and clear errors for everything else."""

from __future__ import annotations

import json

import pytest

from ec2er_utils.hub import download_adapter, is_repo_id


def test_repository_ids_and_local_paths_are_told_apart(tmp_path):
    assert is_repo_id("ada/ec2er-lora")
    assert not is_repo_id("./runs/x") and not is_repo_id("/abs/x") and not is_repo_id("a/b/c")
    (tmp_path / "ada").mkdir()
    assert not is_repo_id(str(tmp_path / "ada"))


def test_an_adapter_is_downloaded_by_id_and_a_repository_without_one_is_refused(tmp_path, monkeypatch):
    import huggingface_hub

    adapter, other = tmp_path / "adapter", tmp_path / "other"
    adapter.mkdir()
    other.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "smollm2"}))
    folders = {"ada/lora": adapter, "ada/not-an-adapter": other}

    def stand_in(repo_id, repo_type):
        if repo_id not in folders:
            raise ConnectionError("the Hub is unreachable")
        return str(folders[repo_id])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", stand_in)
    assert download_adapter("ada/lora") == adapter
    with pytest.raises(FileNotFoundError, match="holds no adapter_config.json"):
        download_adapter("ada/not-an-adapter")
    with pytest.raises(FileNotFoundError, match="no such local folder, and no adapter could be downloaded"):
        download_adapter("ada/missing")
