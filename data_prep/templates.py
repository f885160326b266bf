"""Prompt templates: how a problem is shown to the model.

* ``chat``: the model's chat template with the bare question (the default for the synthetic task:
  the embedded 135M model answers arithmetic far better when not asked for ``\\boxed{}``).
* ``chat_boxed``: the chat template, asking for the final answer in ``\\boxed{}``.
* ``chat_tool``: the chat template, asking the model to compute with a Python block (``--tools python``: the block
  runs in a sandbox and its output comes back; ``reasoning_rl/tool_use.py``).
* ``r1_zero``: DeepSeek-R1-Zero's plain-text template; the model continues after ``<think>``.
* ``few_shot``: plain text with worked examples ending in ``#### n`` (base models).
"""

from __future__ import annotations

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
TOOL_INSTRUCTION = ("Use Python: write ```python\nprint(...)\n``` to compute it. Its output will be shown to you; "
                    "then give the final answer.")

R1_ZERO = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with "
    "the answer. The reasoning process is enclosed within <think> </think> and the answer is enclosed "
    "within <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>.\nUser: {problem}\nAssistant: <think>"
)

FEW_SHOT_EXAMPLES = [
    ("Ann has 3 boxes with 4 pens in each box. She gives away 5 pens. How many pens does she have left?",
     "She has 3 * 4 = 12 pens. After giving away 5 she has 12 - 5 = 7 pens.\n#### 7"),
    ("A train travels 60 km per hour for 2.5 hours. How far does it go?",
     "It goes 60 * 2.5 = 150 km.\n#### 150"),
    ("Tom buys 2 shirts at $15 each and a hat for $8. How much does he spend?",
     "The shirts cost 2 * 15 = 30 dollars. With the hat he spends 30 + 8 = 38 dollars.\n#### 38"),
]

TEMPLATES = ("chat", "chat_boxed", "chat_tool", "r1_zero", "few_shot")
CHAT_INSTRUCTIONS = {"chat": None, "chat_boxed": BOXED_INSTRUCTION, "chat_tool": TOOL_INSTRUCTION}


def render_prompt(problem: str, template: str, tokenizer=None) -> str:
    """The prompt text for ``problem`` (chat templates need the model's ``tokenizer``)."""
    if template in CHAT_INSTRUCTIONS:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"template {template!r} needs a tokenizer with a chat template; use 'r1_zero' or 'few_shot'")
        instruction = CHAT_INSTRUCTIONS[template]
        content = problem if instruction is None else f"{problem}\n{instruction}"
        return tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    if template == "r1_zero":
        return R1_ZERO.format(problem=problem)
    if template == "few_shot":
        shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in FEW_SHOT_EXAMPLES)
        return f"{shots}Question: {problem}\nAnswer:"
    raise ValueError(f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}")
