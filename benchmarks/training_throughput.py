"""CPU training throughput of the embedded model: bf16 vs fp32, gradient checkpointing off vs on.

Runs a few optimizer steps of the real training path (Unsloth's CPU backend, TRL SFTTrainer, LoRA on the attention
projections) for each variant on the same repeated questions, skips the first (warm-up) steps, and prints tokens/s
side by side with the ratio to the default (the dtype ``models.preferred_dtype()`` picks, checkpointing off).
It also prints tokens per CPU-second of this process and the load average: on a shared machine the wall-clock
numbers drop with the other processes' load.

    .venv/bin/python benchmarks/training_throughput.py [--steps 6] [--batch 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from ec2er_utils import training  # imports unsloth first
import torch  # noqa: I001
from ec2er_utils.formatting import question_from_ea, questions_from_eu
from ec2er_utils.models import preferred_dtype
from ec2er_utils.schemas import EAItem, EUItem


def sample_questions():
    eu = EUItem(qid="b1", coarse_category="complex_emotions", subject="Mia",
                scenario=("Mia got the job offer she had wanted for years, but taking it means moving across the "
                          "country, far from her mother, who has been ill since the spring."),
                emotion_choices=["Joy & Guilt", "Anger", "Fear", "Pride", "Disgust", "Boredom"],
                emotion_label="Joy & Guilt",
                cause_choices=["The offer comes with leaving her sick mother", "She dislikes the job",
                               "She is bored at home", "She lost money"],
                cause_label="The offer comes with leaving her sick mother")
    ea = EAItem(qid="b2", category="Personal-Others", **{"question type": "Response"}, subject="Tom",
                scenario="Tom's closest friend failed an important exam and sounds upset on the phone.",
                choices=["Mock him", "Comfort him and offer to study together", "Ignore him", "Change the subject"],
                label="Comfort him and offer to study together")
    emotion, cause = questions_from_eu(eu, "She is glad about the job yet feels guilty about leaving her mother.",
                                       "The joy comes from the offer, the guilt from leaving her ill mother.")
    return [emotion, cause, question_from_ea(ea, "Comfort and practical help address his distress best.")]


def measure(dtype: str, checkpointing: bool, steps: int, warmup: int, batch: int) -> float:
    os.environ["EC2ER_DTYPE"] = dtype
    questions = sample_questions() * 8
    with tempfile.TemporaryDirectory() as out:
        config = training.TrainConfig(max_steps=steps, per_device_train_batch_size=batch,
                                      gradient_accumulation_steps=1, gradient_checkpointing=checkpointing,
                                      logging_steps=1, output_dir=out, warmup_ratio=0.0)
        plan = training.prepare_run(config, len(questions))
        model, tokenizer, _ = training.load_model_for_training(plan)
        trainer = training.build_trainer(model, tokenizer, plan, questions)
        stamps = []

        from transformers import TrainerCallback

        class Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                stamps.append((time.perf_counter(), time.process_time(), state.num_input_tokens_seen))

        trainer.add_callback(Clock())
        trainer.train()
    (t0, c0, n0), (t1, c1, n1) = stamps[warmup - 1], stamps[-1]
    return (n1 - n0) / (t1 - t0), (n1 - n0) / (c1 - c0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args(argv)
    default = "bf16" if str(preferred_dtype("cpu")) == "torch.bfloat16" else "fp32"
    variants = [(default, False), ("fp32" if default == "bf16" else "bf16", False), (default, True)]
    results = {}
    for dtype, checkpointing in variants:
        wall, cpu = measure(dtype, checkpointing, args.steps, args.warmup, args.batch)
        results[(dtype, checkpointing)] = (wall, cpu)
        print(f"  measured {dtype} checkpointing={checkpointing}: {wall:.0f} tokens/s", flush=True)
    base = results[variants[0]][0]
    print(f"\nembedded SmolLM2-135M, LoRA r=16 attention, batch {args.batch}, steps {args.warmup + 1}-{args.steps}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<38}{'tokens/s':>10}{'vs default':>12}{'tokens/CPU-s':>14}")
    for (dtype, checkpointing), (wall, cpu) in results.items():
        name = f"{dtype}, gradient checkpointing {'on' if checkpointing else 'off'}"
        print(f"{name:<38}{wall:>10.0f}{wall / base:>11.2f}x{cpu:>14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
