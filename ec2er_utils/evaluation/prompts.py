"""Prompts of the evaluation protocols (which protocol asks what: README, chapter 05).

``official``: EmoBench's own wording (``src/configs/prompts.yaml`` and ``response.yaml`` of
github.com/Sahandfer/EmoBench, assembled as its ``src/model.py`` and ``src/data.py`` do). Every space and newline is
kept, the odd ones included (a trailing space after "## Question" in the EA prompt, two spaces inside the English
answer statement), because the official numbers were measured with exactly these strings. The other protocols use
the paper's training format from :mod:`ec2er_utils.formatting`.
"""

from __future__ import annotations

import json

from ..formatting import LETTERS, Question, question_from_ea, questions_from_eu
from ..schemas import EAItem, EUItem

OFFICIAL_SYSTEM = {
    "en": ("# Instructions\n\n"
           "In this task, you are presented with a scenario, a question, and multiple choices. \n"
           "Carefully analyze the scenario and take the perspective of the individual involved.\n"
           "Then, select the option that best reflects their perspective or emotional response.\n\n"
           "# Output\n"),
    "zh": ("# 说明\n"
           "在这个任务中，你会面临一个场景、一个问题和多个选项。\n"
           "仔细分析场景，并从相关人员的角度进行思考。\n"
           "然后，选择最能反映他们的观点或情绪反应的选项。\n\n"
           "# 输出\n"),
}

# The answer statement: "base" asks for the letter only, "cot" for step-by-step reasoning first.
OFFICIAL_STATEMENT = {
    "base": {
        "en": ("Provide only one single correct answer to this question.  Do not provide any additional "
               "information or explanations. The response should be in the following JSON format:\n"),
        "zh": "只提供一个正确的答案。 不要提供任何额外的信息或解释。 回复应采用以下JSON格式：\n",
    },
    "cot": {
        "en": ("Provide a step-by-step reasoning that explores each option's potential impact on the individual(s) "
               "in question, considering their emotions, previous experiences mentioned in the scenario, and the "
               "possible outcomes of each choice. Then, select the most appropriate answer based on your "
               "reasoning. The response should be in the following JSON format:\n"),
        "zh": ("提供逐步推理，探索每个选项对相关个人的潜在影响，"
               "考虑他们的情绪、场景中提到的先前经历以及每个选择的可能结果。 "
               "然后，根据你的推理选择最合适的答案。 回复应采用以下JSON格式：\n"),
    },
}

# The JSON fields the answer must have, per task; the EU keys are answer_q1 (emotion) and answer_q2 (cause).
OFFICIAL_FIELDS = {
    "EU": {
        "en": ('"answer_q1": "<Respond to the Question 1 with the corresponding letter numbering>",\n'
               '"answer_q2": "<Respond to the Question 2 with the corresponding letter numbering>"\n'),
        "zh": '"answer_q1": "<用相应的字母进行回答问题1>",\n"answer_q2": "<用相应的字母进行回答问题2>"\n',
    },
    "EA": {
        "en": '"answer": "<Respond with the corresponding letter numbering>"\n',
        "zh": '"answer": "<用相应的字母进行回答>"\n',
    },
}
OFFICIAL_REASONING_FIELD = {"en": '"reasoning": "<Step by step reasoning>"\n', "zh": '"reasoning": "<逐步推理>"'}
OFFICIAL_ANSWER_KEYS = {"EU": {"emotion": "answer_q1", "cause": "answer_q2"}, "EA": {"answer": "answer"}}

OFFICIAL_USER = {
    "EU": {
        "en": ("## Scenario\n{scenario}\n\n"
               "## Question 1\nWhat emotion(s) would {subject} ultimately feel in this situation?\n\n"
               "## Choices for Question 1\n{emo_choices}\n\n"
               "## Question 2\nWhy would {subject} feel these emotions in this situation?\n\n"
               "## Choices for Question 2\n{cause_choices}\n"),
        "zh": ("## 场景\n{scenario}\n\n"
               "## 问题 1\n在这种情况下，{subject}最终会感受到什么情绪？\n\n"
               "## 问题 1 的选项\n{emo_choices}\n\n"
               "## 问题 2\n{subject}为什么会在这种情况下感受到这些情绪？\n\n"
               "## 问题 2 的选项\n{cause_choices}"),
    },
    "EA": {
        "en": ("## Scenario\n{scenario}\n\n"
               "## Question \nIn this scenario, what is the most effective {q_type} for {subject}?\n\n"
               "## Choices\n{choices}\n"),
        "zh": ("## 场景\n{scenario}\n\n"
               "## 问题\n在这个场景中，{subject}最有效的{q_type}是什么？\n\n"
               "## 选项\n{choices}\n"),
    },
}

# The official harness's generation budget for its local (Hugging Face pipeline) models.
OFFICIAL_MAX_NEW_TOKENS = {False: 50, True: 2048}

# ``choice`` reads the answer letter where the JSON asks for it, skipping the reasoning.
CHOICE_ANSWER_PREFIX = '{\n  "answer": "'


def reasoned_answer_prefix(reasoning: str) -> str:
    """``reason-score``: the start of the trained assistant turn (:func:`~ec2er_utils.formatting.assistant_response`,
    ``json.dumps(..., indent=2)``) with ``reasoning`` filled in, up to where the answer letter goes."""
    return '{\n  "reasoning": ' + json.dumps(reasoning, ensure_ascii=False) + ',\n  "answer": "'


def cloze_prompt(question: Question) -> str:
    """The ``cloze`` user turn: the paper format's scenario and question, without the options; the assistant's
    answer is then each option's text in turn (the completion formulation of OLMES and lm-evaluation-harness)."""
    return f"<scenario>\n{question.scenario}\n</scenario>\n\n<question>\n{question.question}\n</question>"


def lettered_choices(choices: list[str] | tuple[str, ...]) -> str:
    """``A) first\\nB) second`` as in the official prompts."""
    return "\n".join(f"{LETTERS[i]}) {choice}" for i, choice in enumerate(choices))


def official_system_prompt(task: str, language: str, cot: bool = False, model_name: str = "") -> str:
    """The official system message: instructions, then the JSON answer format."""
    statement = OFFICIAL_STATEMENT["cot" if cot else "base"][language]
    fields = OFFICIAL_FIELDS[task][language]
    if cot:
        fields = OFFICIAL_REASONING_FIELD[language] + ",\n" + fields
    prompt = OFFICIAL_SYSTEM[language] + f"\n{statement}\n```json\n    {{\n    {fields}\n    }}\n``` \n    "
    if "qwen" in model_name.lower() and not cot:
        prompt = "/no_think\n\n" + prompt
    return prompt


def official_user_prompt(item: EUItem | EAItem) -> str:
    """The official user message for one item."""
    if isinstance(item, EUItem):
        return OFFICIAL_USER["EU"][item.language].format(
            scenario=item.scenario, subject=item.subject, emo_choices=lettered_choices(item.emotion_choices),
            cause_choices=lettered_choices(item.cause_choices))
    return OFFICIAL_USER["EA"][item.language].format(
        scenario=item.scenario, subject=item.subject, choices=lettered_choices(item.choices),
        q_type=item.question_type)


def official_messages(item: EUItem | EAItem, *, cot: bool = False, model_name: str = "") -> list[dict[str, str]]:
    task = "EU" if isinstance(item, EUItem) else "EA"
    return [{"role": "system", "content": official_system_prompt(task, item.language, cot, model_name)},
            {"role": "user", "content": official_user_prompt(item)}]


def gold_letters(item: EUItem | EAItem) -> dict[str, str]:
    """The correct letters: ``{"emotion", "cause"}`` for EU, ``{"answer"}`` for EA."""
    if isinstance(item, EUItem):
        return {"emotion": LETTERS[item.emotion_choices.index(item.emotion_label)],
                "cause": LETTERS[item.cause_choices.index(item.cause_label)]}
    return {"answer": LETTERS[item.choices.index(item.label)]}


def paper_questions(item: EUItem | EAItem) -> dict[str, Question]:
    """The item in the paper's format, keyed like :func:`gold_letters`."""
    if isinstance(item, EUItem):
        emotion, cause = questions_from_eu(item)
        return {"emotion": emotion, "cause": cause}
    return {"answer": question_from_ea(item)}

