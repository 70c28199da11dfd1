"""Is the adapter really applied? A LoRA adapter that is loaded but changes nothing (never trained, B still zero;
loaded onto the wrong modules; disabled) scores exactly like the base model, so a "base vs tuned" comparison would
measure nothing: :func:`~ec2er_utils.evaluation.evaluate` runs :func:`check_adapter_applied` before scoring with
any local adapter."""

from __future__ import annotations

from typing import Any

from ..formatting import Question

# Log-probabilities of the same text differ by more than this when an adapter does anything at all; a zero
# (identity) adapter gives exactly 0, bfloat16 rounding of an identical computation too.
ADAPTER_EFFECT_TOLERANCE = 1e-4


class AdapterNotApplied(RuntimeError):
    """The adapter leaves the scored log-probabilities unchanged: the tuned model is the base model."""


def check_adapter_applied(scorer: Any, question: Question, adapter: Any = None) -> float:
    """The largest change the adapter makes to ``question``'s option-letter log-probabilities
    (:meth:`ChoiceScorer.option_logprobs`, with it and with PEFT's ``disable_adapter()``); raise
    :class:`AdapterNotApplied` when that is at most :data:`ADAPTER_EFFECT_TOLERANCE`."""
    model = scorer.hf_model
    if not hasattr(model, "disable_adapter"):
        raise AdapterNotApplied(f"the model {type(model).__name__} carries no PEFT adapter at all, though one was "
                                "asked for; load it with ec2er_utils.models.load_model_and_tokenizer(adapter=...)")
    with_adapter = scorer.option_logprobs([question])[0]
    with model.disable_adapter():
        without = scorer.option_logprobs([question])[0]
    difference = max(abs(with_adapter[letter] - without[letter]) for letter in with_adapter)
    if difference <= ADAPTER_EFFECT_TOLERANCE:
        raise AdapterNotApplied(
            f"the adapter {adapter or ''} does not change the model's log-probabilities (largest change "
            f"{difference:.2g} on the first question, {question.kind}): it is an identity adapter "
            "(LoRA B matrices still zero: never trained, or training never reached it) or it is not active. "
            "Check the training run's loss fell and that its adapter folder is the one passed; evaluating it "
            "would only repeat the base model's numbers.")
    return difference
