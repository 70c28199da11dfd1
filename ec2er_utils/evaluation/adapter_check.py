"""Is the adapter really applied? A LoRA adapter that is loaded but changes nothing (never trained, B still zero;
loaded onto the wrong modules; disabled) scores exactly like the base model, and a comparison of "base vs tuned"
would then measure nothing. :func:`check_adapter_applied` reads the log-probabilities a local protocol scores on
one question with the adapter and again with it switched off (PEFT's ``disable_adapter()``), and refuses to go on
when they are the same. :func:`~ec2er_utils.evaluation.evaluate` runs it before scoring with any local adapter.
"""

from __future__ import annotations

from typing import Any

from ..formatting import Question

# Log-probabilities of the same text differ by more than this when an adapter does anything at all; a zero
# (identity) adapter gives exactly 0, bfloat16 rounding of an identical computation too.
ADAPTER_EFFECT_TOLERANCE = 1e-4


class AdapterNotApplied(RuntimeError):
    """The adapter leaves the scored log-probabilities unchanged: the tuned model is the base model."""


def adapter_effect(scorer: Any, question: Question) -> dict[str, Any]:
    """Option-letter log-probabilities of ``question`` (:meth:`ChoiceScorer.option_logprobs`, the numbers the
    ``choice`` protocol reads) with the adapter and with it disabled, and the largest absolute difference."""
    model = scorer.hf_model
    if not hasattr(model, "disable_adapter"):
        raise AdapterNotApplied(f"the model {type(model).__name__} carries no PEFT adapter at all, though one was "
                                "asked for; load it with ec2er_utils.models.load_model_and_tokenizer(adapter=...)")
    with_adapter = scorer.option_logprobs([question])[0]
    with model.disable_adapter():
        without = scorer.option_logprobs([question])[0]
    difference = max(abs(with_adapter[letter] - without[letter]) for letter in with_adapter)
    return {"with_adapter": with_adapter, "without_adapter": without, "max_abs_difference": difference}


def check_adapter_applied(scorer: Any, question: Question, adapter: Any = None) -> dict[str, Any]:
    """Raise :class:`AdapterNotApplied` when the adapter does not change ``question``'s scored log-probabilities
    (more than :data:`ADAPTER_EFFECT_TOLERANCE`); else return :func:`adapter_effect`'s numbers."""
    effect = adapter_effect(scorer, question)
    if effect["max_abs_difference"] <= ADAPTER_EFFECT_TOLERANCE:
        raise AdapterNotApplied(
            f"the adapter {adapter or ''} does not change the model's log-probabilities (largest change "
            f"{effect['max_abs_difference']:.2g} on the first question, {question.kind}): it is an identity adapter "
            "(LoRA B matrices still zero: never trained, or training never reached it) or it is not active. "
            "Check the training run's loss fell and that its adapter folder is the one passed; evaluating it "
            "would only repeat the base model's numbers.")
    return effect
