"""Chapters 01 and 02: the two generation pipelines of §3.2.

- :mod:`.mads` — Algorithm 1, the Multi-Agent Dialogue System (``mads_dialogue``, ``run_dialogue``, ``run_mads``)
- :mod:`.concise` — Algorithm 2, the concise single-conversation pipeline (``concise_conversation``, ``run_concise``)
- :mod:`.prompts` — every prompt the agents send
- :mod:`.dialogue` — one conversation: messages, speaker views, turn cleaning
- :mod:`.items` — the schemas the extraction agents fill and the items built from them
- :mod:`.lockstep` — many conversations advanced together, one batched call per step
- :mod:`.runner`, :mod:`.run_files` — batched, checkpointed, resumable runs
- :mod:`.client` — the generator's LLM client (embedded model, a server, or server replicas)
"""

from .client import ReplicaClient, make_generator_client
from .dialogue import transcript

__all__ = ["ReplicaClient", "make_generator_client", "transcript"]
