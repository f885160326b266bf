"""Write tests/data/verifier_corpus.jsonl (python tests/data/make_verifier_corpus.py, from the repository root): completions written for this project in the styles models use, each with
its reference and a hand label (is the final answer right?)."""
import json

rows = []
def add(style, completion, reference, label):
    rows.append({"style": style, "completion": completion, "reference": reference, "label": label})

# Minerva few-shot ending
add("minerva", "The total is $4\\cdot 12 + 7 = 55$.\nFinal Answer: The final answer is $55$. I hope it is correct.", "55", True)
add("minerva", "The total is $4\\cdot 12 + 7 = 55$.\nFinal Answer: The final answer is $55$. I hope it is correct.", "56", False)
add("minerva", "Adding the two parts gives 3,120 and 7,335.\nFinal Answer: The final answer is $10,455$. I hope it is correct.", "10455", True)
add("minerva", "We need $2^n > 1000$, so $n = 10$.\nFinal Answer: The smallest $n$ is 10.", "10", True)
add("minerva", "We need $2^n > 1000$, so $n = 10$.\nFinal Answer: The smallest $n$ is 9.", "10", False)
add("minerva", "The roots are $x=2$ and $x=3$.\nFinal Answer: The final answer is $2,3$. I hope it is correct.", "2, 3", True)
# PRM800K-style headings
add("heading", "First, $6 \\times 7 = 42$. Then half of that is 21.\n\n# Answer\n\n21", "21", True)
add("heading", "First, $6 \\times 7 = 42$. Then half of that is 21.\n\n# Answer\n\n21", "42", False)
add("heading", "So the probability is $\\frac{3}{8}$ after simplifying $\\frac{6}{16}$.\n\n# Answer\n\n\\frac{3}{8}", "\\frac{3}{8}", True)
add("heading", "The area is $\\pi r^2$ with $r = 3$.\n\n**Final Answer**\n\\[ 9\\pi \\]", "9\\pi", True)
add("heading", "The area is $\\pi r^2$ with $r = 3$.\n\n**Final Answer**\n\\[ 6\\pi \\]", "9\\pi", False)
add("heading", "Each box holds 12, and there are 5 boxes.\nFinal answer:\n60 apples", "60", True)
# R1 think template
add("think", "<think>Maybe it is 14? No: 3 + 4 = 7, times 2 is 14... wait the question says plus 2, so 9.</think>\n<answer>9</answer>", "9", True)
add("think", "<think>3 + 4 = 7, and 7 + 2 = 9, so \\boxed{9}.</think>\nThe answer is 8.", "9", False)
add("think", "<think>Let me try 12 / 4 = 3.</think> The result is \\boxed{3}.", "3", True)
# Put your final answer in \boxed{}
add("boxed", "We solve $x^2 - 5x + 6 = 0$: the solutions are $\\boxed{2}$ and $\\boxed{3}$.", "2, 3", True)
add("boxed", "The pairs are $\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}$.", "(2, 2), (6, 2)", True)
add("boxed", "The pairs are $\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}$.", "(2, 2)", False)
add("boxed", "For part (a) the answer is $\\boxed{12}$, and for part (b) it is $\\boxed{7}$.", "12, 7", True)
add("boxed", "I first wrote $\\boxed{15}$ but that double counts; the answer is $\\boxed{12}$.", "12", True)
add("boxed", "I first wrote $\\boxed{15}$ but that double counts; the answer is $\\boxed{12}$.", "15", False)
add("boxed", "So $k = 45$ and $n = 2$: $\\boxed{k = 45} \\quad \\text{and} \\quad \\boxed{n = 2}$.", "k = 45, n = 2", True)
# Answer: / The answer is: (MetaMath)
add("answer_colon", "Twice 8 is 16 and 16 - 3 = 13.\nAnswer: 13", "13", True)
add("answer_colon", "Twice 8 is 16 and 16 - 3 = 13.\nAnswer: 13", "16", False)
add("metamath", "Substituting back, $x = -1$ and $y = 6$.\nThe answer is: (-1,6)", "(-1,6)", True)
add("metamath", "Substituting back, $x = -1$ and $y = 6$.\nThe answer is: (-1,6)", "(-1,7)", False)
add("metamath", "At first the answer is 20, but we counted the corner twice, so the answer is 19.\nThe answer is: 19", "19", True)
add("metamath", "At first the answer is 20, but we counted the corner twice, so the answer is 19.\nThe answer is: 19", "20", False)
# GSM8K few-shot
add("gsm8k", "She buys 3 packs of 12 = 36 eggs and uses 9.\n36 - 9 = 27\n#### 27", "27", True)
add("gsm8k", "She buys 3 packs of 12 = 36 eggs and uses 9.\n36 - 9 = 27\n#### 36", "27", False)
add("gsm8k", "The trip costs 1,250 dollars per person, so for 4 people it is 5,000.\n#### 5,000", "5000", True)
# perturbations: decimals for fractions, approximations, units, European decimals, plain-text algebra
add("decimal", "Dividing, the chance is about 0.0833333333333333.", "\\frac{1}{12}", True)
add("decimal", "So the ratio is 0.33.", "\\frac{1}{3}", True)
add("decimal", "So the ratio is 0.34.", "\\frac{1}{3}", False)
add("decimal", "The length is $\\sqrt{17}$.", "4.123105625617661", True)
add("decimal", "The length is $\\sqrt{17}$.", "4.2", False)
add("approx", "Solving numerically, $x \\approx 11$.", "11", True)
add("approx", "Solving numerically, $x \\approx 11$.", "12", False)
add("units", "The fence is 1,000.99m² in total. The answer is 1,000.99m²", "1000.99", True)
add("units", "Each side is 12cm, so the answer is 12cm.", "12", True)
add("units", "Each side is 12cm, so the answer is 12cm.", "13", False)
add("european", "Die Antwort: der Preis ist 1,22 Euro. The answer is 1,22", "1.22", True)
add("european", "The answer is 0,111", "0.111", True)
add("european", "The answer is 7,425,000", "7425000", True)
add("european", "The answer is 7,425,000", "7.425", False)
add("leading_dot", "The probability is .4", "0.4", True)
add("leading_dot", "The probability is .4", "0.04", False)
add("plain_algebra", "Expanding, the answer is x^2+2x+1", "x^2 + 2x + 1", True)
add("plain_algebra", "Expanding, the answer is x^2+2x+1", "x^2 + 2x - 1", False)
add("plain_algebra", "Factoring gives the answer is (r+5)(r+5)", "(r+5)^2", True)
add("plain_algebra", "So the answer is y = 3x - 2", "3x - 2", True)
add("letters", "The correct choice is $\\mathrm{C}$.", "C", True)
add("letters", "The correct choice is $\\textbf{B}$.", "C", False)
add("interval", "Hence $-2 \\le x \\le 7$.", "[-2, 7]", True)
add("interval", "Hence $-2 < x < 7$.", "[-2, 7]", False)
# the question restated: an expression that is never evaluated
add("restated", "To find the sum we compute $13 + 29$.", "42", False)
add("restated", "We need $\\log_2 64$, which we now simplify.", "6", False)
add("restated", "We need $\\log_2 64$, which is 6.", "6", True)

add("units", "It weighs 12kg.", "12", True)
add("words", "Counting again, the answer is twelve.", "12", True)
add("words", "Counting again, the answer is twelve.", "11", False)
add("think", "<think>so it is 9</think> I am not sure.", "9", False)
add("final_statement", "At first I thought the answer is 20, but then I recounted and it is 19.", "19", True)
add("final_statement", "At first I thought the answer is 20, but then I recounted and it is 19.", "20", False)

with open("tests/data/verifier_corpus.jsonl", "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
print(len(rows), "rows")
