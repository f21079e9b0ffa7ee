#!/usr/bin/env python3
"""Random strings over a tricky alphabet and their GPT-2 pre-tokens from the Python `regex` module
(the pattern of HF GPT2Tokenizer / RobertaTokenizer).  Run: python3 gen_gpt2_pretokens.py > gpt2_pretokens.json"""
import json
import random
import regex

PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
ALPHABET = list("aZé ''srtvmld \t\n\r 12½٣!?.,-") + ["\u00a0", "\u2028", "\u001c", "\u3000", "\u0301", "\u05d0",
                                                       "\U0001F600", "\u4e2d", "\u200b", "\u2003", "Ⅻ", "\u0085"]
random.seed(0)
cases = []
for _ in range(400):
    n = random.randint(0, 24)
    s = "".join(random.choice(ALPHABET) for _ in range(n))
    cases.append({"text": s, "pretokens": PAT.findall(s)})
print(json.dumps({"regex_version": regex.__version__, "cases": cases}, ensure_ascii=True, indent=0))
