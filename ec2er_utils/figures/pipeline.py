"""The paper's Figure 1 (the pipeline), drawn from code with this repository's notebooks; it needs no inputs."""

from __future__ import annotations

from .style import new_figure, styled

_BOX_W, _BOX_H = 0.19, 0.22
_PIPELINE_BOXES = {
    # key: (centre x, centre y, title, body, notebook)
    "personas": (0.105, 0.71, "Personas + themes", "PersonaHub or the paper's\nattribute grid; compatible\n"
                 "persona-theme pairs", "00"),
    "mads": (0.35, 0.86, "MADS (Algorithm 1)", "background, client <-> therapist,\nsupervisor every 2 turns\n"
             "(4-14 turns)", "01"),
    "concise": (0.35, 0.56, "Concise (Algorithm 2)", "background + 5-round\nconversation, items inline", "02"),
    "items": (0.60, 0.71, "EU / EA items", "3-4 EU + 3-4 EA per dialogue,\nchain-of-thought explanations,\n"
              "EmoBench format (JSONL)", "01, 02"),
    "preprocess": (0.86, 0.71, "Preprocessing", "schema + taxonomy checks,\nfuzzy de-duplication,\n"
                   "1.5x balance, decontamination", "03"),
    "train": (0.86, 0.17, "LoRA fine-tuning (PEFT)", "Unsloth; Mistral-7B, Qwen2.5-7B,\nGemma-7B-IT, Llama-3.1-8B;\n"
              "loss on the JSON response", "04"),
    "evaluate": (0.60, 0.17, "EmoBench evaluation", "held-out EU / EA,\nbase vs fine-tuned,\n95% bootstrap CI", "05"),
    "figures": (0.35, 0.17, "Figures", "Table 1, dataset\ncomposition, loss curves", "06"),
    "generator": (0.105, 0.17, "Generator LLM", "gpt-oss-20b behind vLLM\n(paper); any OpenAI-\ncompatible server",
                  ""),
}


def _side(key: str, side: str, shift: float = 0.0) -> tuple[float, float]:
    x, y = _PIPELINE_BOXES[key][:2]
    return {"left": (x - _BOX_W / 2, y + shift), "right": (x + _BOX_W / 2, y + shift),
            "top": (x + shift, y + _BOX_H / 2), "bottom": (x + shift, y - _BOX_H / 2)}[side]


# (from, side, to, side, label); shifts keep two arrows into one side apart
_PIPELINE_ARROWS = [(("personas", "right", 0.03), ("mads", "left", 0.0), ""),
                    (("personas", "right", -0.03), ("concise", "left", 0.0), ""),
                    (("mads", "right", 0.0), ("items", "left", 0.03), ""),
                    (("concise", "right", 0.0), ("items", "left", -0.03), ""),
                    (("items", "right", 0.0), ("preprocess", "left", 0.0), ""),
                    (("preprocess", "bottom", 0.0), ("train", "top", 0.0), "train / validation splits"),
                    (("train", "left", 0.0), ("evaluate", "right", 0.0), "adapter"),
                    (("evaluate", "left", 0.0), ("figures", "right", 0.0), "results"),
                    (("generator", "top", 0.0), ("concise", "bottom", -0.04), "LLM calls of\nnotebooks 01, 02")]


@styled
def plot_pipeline():
    """The paper's Figure 1 (persona and theme selection -> supervised multi-agent dialogues -> EU/EA items ->
    preprocessing -> LoRA fine-tuning -> EmoBench evaluation), drawn from code, with this repository's notebooks."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    figure, axes = new_figure(13.0, 6.4)
    ax = axes[0, 0]
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    palette = {"00": "#dbe9f6", "01": "#dbe9f6", "02": "#dbe9f6", "01, 02": "#e6f2e0", "03": "#e6f2e0",
               "04": "#fde8d4", "05": "#fde8d4", "06": "#fde8d4", "": "#eeeeee"}
    for x, y, title, body, notebook in _PIPELINE_BOXES.values():
        ax.add_patch(FancyBboxPatch((x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H,
                                    boxstyle="round,pad=0,rounding_size=0.015", linewidth=1.2,
                                    edgecolor="#333333", facecolor=palette[notebook]))
        ax.text(x, y + _BOX_H / 2 - 0.035, title, ha="center", va="center", fontsize=10.5, fontweight="bold")
        ax.text(x, y - 0.02, body, ha="center", va="center", fontsize=8.3, linespacing=1.3)
        if notebook:
            ax.text(x + _BOX_W / 2 - 0.008, y - _BOX_H / 2 + 0.02, f"notebook {notebook}", ha="right",
                    va="center", fontsize=7, color="#555555", style="italic")
    for (start, start_side, start_shift), (end, end_side, end_shift), label in _PIPELINE_ARROWS:
        a, b = _side(start, start_side, start_shift), _side(end, end_side, end_shift)
        dashed = start == "generator"
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, linewidth=1.1 if dashed else 1.4,
                                     color="#777777" if dashed else "#333333", linestyle="--" if dashed else "-",
                                     shrinkA=0, shrinkB=0))
        if label:
            horizontal = a[1] == b[1]
            ax.text((a[0] + b[0]) / 2 + (0 if horizontal else 0.01), (a[1] + b[1]) / 2 + (0.02 if horizontal else 0),
                    label, fontsize=8, color="#333333", ha="center" if horizontal else "left", va="center")
    ax.set_title("Pipeline (after the paper's Figure 1): synthetic emotional-reasoning data, LoRA fine-tuning, "
                 "EmoBench evaluation", fontsize=11)
    return figure

