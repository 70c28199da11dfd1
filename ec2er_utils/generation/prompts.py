"""Every prompt the generation pipelines send (MADS, notebook 01; concise, notebook 02), in one reviewable place.
Short on purpose (the embedded 135M model runs them on a CPU); items come with a JSON schema, so their prompts
describe each field's content, not the JSON syntax. Placeholders in braces are filled with ``str.format``.
"""

from __future__ import annotations

# Category guides (what each EmoBench category asks for)

EU_CATEGORY_GUIDE: dict[str, str] = {
    "complex_emotions": "mixed, changing or unexpected emotions (for example relief and guilt at once)",
    "emotional_cues": "an emotion that has to be read from subtle cues such as actions, tone or expressions",
    "personal_beliefs_and_experiences": "an emotion that depends on the person's own beliefs, values, culture or "
                                        "past experiences",
    "perspective_taking": "what someone feels given what they know or believe, which can differ from what others "
                          "know",
}
EU_FINEGRAINED_GUIDE: dict[str, str] = {  # EmoBench's English EU sub-types
    "emotion_transition": "the emotion changes as the situation unfolds",
    "mixture_of_emotions": "two emotions at once",
    "unexpected_outcome": "something turns out differently than expected",
    "visual_cues": "the emotion shows in what the person does or how they look",
    "vocal_cues": "the emotion shows in how the person speaks",
    "cultural_value": "the emotion depends on the person's cultural values",
    "persona": "the emotion depends on the person's character or history",
    "sentimental_value": "the emotion depends on what something means to the person",
    "false_belief": "the person believes something that is not true",
    "faux_pas": "someone says or does something hurtful or awkward without realising it",
    "strange_story": "the meaning of an odd remark or act must be inferred (irony, a white lie, a bluff)",
}
EA_CATEGORY_GUIDE: dict[str, str] = {
    "Personal-Self": "the subject's own problem in their private life (family, partner, friends)",
    "Personal-Others": "someone close to the subject (family, partner, friend) has the problem and the subject "
                       "decides how to help",
    "Social-Self": "the subject's own problem at work, at school or in public",
    "Social-Others": "someone at work, at school or in public has the problem and the subject decides how to "
                     "handle it",
}
EA_QUESTION_TYPE_GUIDE: dict[str, str] = {
    "Action": "what the subject should do",
    "Response": "what the subject should say",
}

# Background narratives

BACKGROUND_SYSTEM = ("You write realistic background narratives for therapy role-plays. Write in the third person, "
                     "in plain prose paragraphs, with no headings or lists.")

MADS_BACKGROUND_USER = """Write a background narrative of {min_words}-{max_words} words for a therapy client.

Client: {persona}
Theme: {theme_title} ({theme_description})
Traits and circumstances to weave in naturally, without listing them:
{attributes}

Give the client a first name. Cover their relationships, a recent event that brought the theme to a head, their \
ongoing stressors and how they usually cope."""

CONCISE_BACKGROUND_USER = """Write a condensed background of {min_words}-{max_words} words for a therapy client.

Client: {persona}
Traits and circumstances to weave in naturally, without listing them:
{attributes}

Give the client a first name. Say who is involved, what just happened and why it is hard for them."""

# The two speakers

CLIENT_SYSTEM = """You are role-playing a therapy client. Stay in character: speak in the first person as the \
client, never as the therapist.

Who you are: {persona}
Your story:
{background}

Your insight into your feelings is {insight}; you cope by {coping_style}; you communicate in a \
{communication_style} way. Reply with one short spoken message of at most {max_words} words, without stage \
directions."""

CLIENT_OPENING = 'The session begins. The therapist says: "Welcome. What brings you here today?"'

THERAPIST_SYSTEM = """You are a warm, skilled therapist in a session. Respond with empathetic listening, reflective \
questions or gentle challenges that deepen the emotional exploration: help the client name their emotions, \
understand what causes them, and face the decision they are struggling with. Reply with one short spoken message \
of at most {max_words} words and do not speak for the client.

What you know about the client:
{background}"""

# The supervisor (MADS only)

# Steering (our reading of §3.2's "orchestrator that enforces coherence"): what each unmet criterion of the last
# verdict asks the speakers to bring out next, appended to their system prompts.
STEERING_TOPICS: dict[str, str] = {
    "scenario": "what happened and who is involved",
    "emotions": "the specific emotions the client feels",
    "causes": "why the client feels this way",
    "dilemma": "the decision the client is struggling with",
}
CLIENT_STEERING = "\n\nIn your next message, open up about {topics}."
THERAPIST_STEERING = "\n\nYour supervisor asks you to explore next: {topics}."

SUPERVISOR_SYSTEM = ("You supervise therapy role-plays and judge whether a dialogue is rich enough to write "
                     "emotional-reasoning exam questions from. Reply in JSON.")

SUPERVISOR_USER = """Dialogue so far:
{transcript}

Judge this dialogue. Mark a criterion true only if the dialogue itself shows it:
- scenario: a clear, concrete situation (who is involved, what happened) is established
- emotions: the client expresses specific, authentic emotions
- causes: the reasons behind those emotions are explored
- dilemma: the client faces a genuine dilemma or decision point
Give a one-sentence reason first, then the four judgements."""

# Extraction agents (MADS): EmoBench-format items, one per request

EXTRACTOR_SYSTEM = ("You write multiple-choice questions in the style of the EmoBench benchmark from therapy "
                    "dialogues. Reply in JSON.")

EU_EXTRACTOR_USER = """{context}

Write one emotional-understanding question about a moment above where the client's emotional state can be inferred.
Category: {category} - {category_guide}.
Sub-type: {finegrained} - {finegrained_guide}.
- scenario: two to four sentences in the third person that tell the situation using the client's first name; do \
not name the emotion.
- subject: the person whose emotion is asked about.
{emotion_fields}
- emotion_explanation: step-by-step reasoning from the cues in the scenario to that emotion.
- cause_label: the true reason for the emotion; cause_distractors: three plausible but wrong reasons.
- cause_explanation: why that reason is right and the others are not."""

# What the EU extractor is asked for the emotion question: one emotion, or (mixed items, as EmoBench's
# "Guilt & Relief") two emotions felt at once, each option a pair.
EU_SINGLE_EMOTION_FIELDS = ("- emotion_label: the emotion the subject most likely feels; emotion_distractors: five "
                            "other emotions that are plausible but wrong.")
EU_MIXED_EMOTION_FIELDS = ("- emotion_label: the two emotions the subject feels at once (a pair, e.g. guilt and "
                           "relief); emotion_distractors: five other pairs of emotions that are plausible but wrong.")

EA_EXTRACTOR_USER = """{context}

Write one emotional-awareness question about a decision point above where someone must choose how to act or \
respond.
Category: {category} - {category_guide}.
Question type: {question_type} - {question_type_guide}.
- scenario: two to four sentences in the third person that tell the situation using first names.
- subject: the person who must choose.
- best_choice: the most effective {question_type_word}; other_choices: three plausible but less effective ones.
- explanation: step-by-step reasoning about the emotions involved that shows why the best choice is the most \
effective."""

# Concise pipeline: generic MCQ records (paper §3.3), generated inline from background + conversation

CONCISE_EU_USER = """{context}

Write one multiple-choice question that tests emotional understanding of the client above.
Category: {category} - {category_guide}.
- scenario: two to four sentences in the third person that tell the situation using the client's first name; do \
not name the emotion.
- question: ask which emotion a named person most likely feels.
- correct_answer: that emotion; distractors: three other emotions that are plausible but wrong.
- explanation: step-by-step reasoning from the cues in the scenario to the correct answer."""

CONCISE_EA_USER = """{context}

Write one multiple-choice question that tests emotional awareness: the most effective way to act or respond.
Category: {category} - {category_guide}.
- scenario: two to four sentences in the third person that tell the situation using first names.
- question: ask what the most effective action or response is for a named person.
- correct_answer: the most effective option; distractors: three plausible but less effective options.
- explanation: step-by-step reasoning about the emotions involved that shows why the correct answer is best."""

DIALOGUE_CONTEXT = "Therapy dialogue:\n{transcript}"
BACKGROUND_AND_DIALOGUE_CONTEXT = "Client background:\n{background}\n\nTherapy dialogue:\n{transcript}"
