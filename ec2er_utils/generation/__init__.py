"""Chapters 01 and 02: the two generation pipelines of §3.2, Algorithm 1 (:mod:`.mads`) and Algorithm 2
(:mod:`.concise`), and what they share (prompts, conversations, items, lockstep batches, resumable runs, the LLM
client). Each module's role: ARCHITECTURE.md, "The generation package"; behaviour: README, chapters 01 and 02.
"""

from .client import ReplicaClient, make_generator_client

__all__ = ["ReplicaClient", "make_generator_client"]
