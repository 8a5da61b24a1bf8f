#!/usr/bin/env python3
"""Writes tests/data/tokenizer_golden.json: reference token ids for the tokenizer tests.

Reference tokenizer. transformers' GGUF loader (AutoTokenizer.from_pretrained(dir,
gguf_file=...)) converts the vocabulary, merges and added tokens faithfully, but it ignores
tokenizer.ggml.pre = "smollm" and installs a plain GPT-2 ByteLevel pre-tokenizer, while the
tokenizer.json that HuggingFaceTB ships for SmolLM2 uses
    Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)]
The two differ on whitespace runs before digits ("  1": [Ġ, Ġ, 1] versus [ĠĠ, 1]). So the
reference is the converted tokenizer with its pre-tokenizer replaced by SmolLM2's own; the
script prints how many ids the unmodified conversion gets wrong per novel, as evidence.

Usage:
  python3 tools/make_tokenizer_golden.py                 # writes tests/data/tokenizer_golden.json
  python3 tools/make_tokenizer_golden.py --check-export DIR
      # loads DIR/tokenizer.json (written by awq.cpp's WriteHfTokenizerFiles) with
      # PreTrainedTokenizerFast and with AutoTokenizer, and checks ids equal the reference on
      # every novel and every tricky string.
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(REPO, "assets", "models")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT_DIR = os.path.join(REPO, "assets", "text")
NOVELS = ["emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice",
          "sensesensibility"]
OUT = os.path.join(REPO, "tests", "data", "tokenizer_golden.json")
TINY_DIR = os.path.join(REPO, "tests", "data", "tokenizer_tiny")

# Strings that exercise the corners of the pre-tokenizer, the merges and special-token matching.
TRICKY = [
    "",
    " ",
    "Hello world",
    "Hello, world! How are you?",
    "don't you think? We've seen it. I'm sure they'll say it's fine. He'd go.",
    "DON'T SHOUT, 'TIS I'LL",
    "Numbers: 12345 and 3.14159 and 1,000,000 and 2024-07-26",
    "  1  22   333",
    "a1b2c3 x99y",
    "tabs\tand\nnewlines\r\nCRLF\r\n\r\nend",
    "multiple   internal    spaces   ",
    "   leading and trailing   ",
    "\n\n\n",
    "Café naïve résumé façade Ångström",
    "你好，世界！这是一个测试。",
    "日本語のテキスト 한국어 Россия مرحبا",
    "Emoji: 😀👍🏽🇺🇸 and ❤️ and 👨‍👩‍👧",
    "non\u00a0breaking\u2003em space\u2028line sep",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>text<|im_end|>",
    "a<|im_start|>b <|im_end|> c<|im_start|",
    "<jupyter_code>print(1)<empty_output>",
    "def foo(x):\n    return x ** 2  # comment\n",
    "Punctuation!!! ??? ... --- (parens) [brackets] {braces} “quotes” ‘single’ — dash",
    "ſ ß ﬁ Ǆ İstanbul",
]

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Tell me about Emma Woodhouse."},
     {"role": "assistant", "content": "She is handsome, clever, and rich."},
     {"role": "user", "content": "  And Mr. Knightley?  "}],
    [{"role": "system", "content": "Be kind.\nAlways."},
     {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello! How can I help?"}],
]

# Chat templates of the other families, as their model cards ship them.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}")
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}")
# ChatML without a default system message (as Qwen2-style templates minus the tool branches).
CHATML_PLAIN_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}")


def fnv1a64_ids(ids):
    """FNV-1a 64 over the ids written as little-endian int32 bytes."""
    h = 0xCBF29CE484222325
    data = b"".join(int(i).to_bytes(4, "little", signed=True) for i in ids)
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def load_reference():
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer
    converted = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF_NAME)
    reference = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF_NAME)
    reference.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    return converted, reference


def read_novel(name):
    with open(os.path.join(TEXT_DIR, name + ".txt"), encoding="utf-8", newline="") as f:
        return f.read()


def render_templates(reference):
    out = []
    families = [
        ("smollm2", reference.chat_template, "<|im_start|>", "<|im_end|>"),
        ("chatml_plain", CHATML_PLAIN_TEMPLATE, "<|im_start|>", "<|im_end|>"),
        ("llama3", LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"),
        ("llama2", LLAMA2_TEMPLATE, "<s>", "</s>"),
    ]
    for name, template, bos, eos in families:
        for conv in CONVERSATIONS:
            for gen in (False, True):
                text = reference.apply_chat_template(
                    conv, chat_template=template, tokenize=False, add_generation_prompt=gen,
                    bos_token=bos, eos_token=eos)
                out.append({"family": name, "template": template, "bos": bos, "eos": eos,
                            "messages": conv, "add_generation_prompt": gen, "rendered": text})
    return out


def make_tiny():
    """A 400-token Llama-3-style tokenizer trained on the start of Emma: exercises what SmolLM2's
    does not (Split regex + ByteLevel without regex, ignore_merges, a BOS post-processor,
    lstrip/rstrip and non-special added tokens, the "a b" merges spelling). Writes
    tests/data/tokenizer_tiny/{tokenizer.json,tokenizer_config.json} and returns golden cases."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import processors, trainers
    from transformers import PreTrainedTokenizerFast
    llama3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(llama3), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([read_novel("emma")[:30000]], trainer=trainer)
    tok.add_special_tokens([AddedToken("<|begin_of_text|>", special=True, normalized=False),
                            AddedToken("<|eot_id|>", special=True, normalized=False),
                            AddedToken("<mask>", special=True, lstrip=True, normalized=False),
                            AddedToken("<R>", special=True, rstrip=True, normalized=False)])
    tok.add_tokens([AddedToken("[NEW]", special=False, normalized=True)])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
        special_tokens=[("<|begin_of_text|>", bos)])
    os.makedirs(TINY_DIR, exist_ok=True)
    path = os.path.join(TINY_DIR, "tokenizer.json")
    tok.save(path)
    # The older "a b" merges spelling (tokenizers accepts one spelling per file); the export
    # from GGUF uses the ["a", "b"] one, so the C++ loader sees both.
    j = json.load(open(path, encoding="utf-8"))
    j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=1)
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
              "chat_template": LLAMA3_TEMPLATE, "model_max_length": 2048,
              "tokenizer_class": "PreTrainedTokenizerFast"}
    with open(os.path.join(TINY_DIR, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    fast = PreTrainedTokenizerFast(tokenizer_file=path, bos_token="<|begin_of_text|>",
                                   eos_token="<|eot_id|>")
    cases = []
    extra = ["x <mask> y", "x<mask>y", "  <mask>  <R>  z", "a[NEW]b [NEW] ", "Emma Woodhouse",
             "handsome, clever, and rich", "1234567", "I'M HERE, 'S OK", "a\r\n\r\n b\n\n c"]
    for s in TRICKY + extra:
        ids = fast(s).input_ids
        cases.append({"text": s, "ids": ids, "decoded": fast.decode(ids),
                      "decoded_skip_special": fast.decode(ids, skip_special_tokens=True),
                      "ids_no_special": fast(s, add_special_tokens=False).input_ids})
    return {"bos_id": bos, "eos_id": tok.token_to_id("<|eot_id|>"),
            "vocab_size": tok.get_vocab_size(), "cases": cases}


def make_golden():
    converted, reference = load_reference()
    golden = {"generator": "tools/make_tokenizer_golden.py",
              "reference": "transformers GGUF conversion of " + GGUF_NAME +
                           " with SmolLM2's Digits+ByteLevel pre-tokenizer",
              "bos_id": reference.bos_token_id, "eos_id": reference.eos_token_id,
              "vocab_size": len(reference), "novels": [], "tricky": [], "chat": []}
    for name in NOVELS:
        text = read_novel(name)
        t0 = time.time()
        ids = reference(text).input_ids
        dt = time.time() - t0
        plain = converted(text).input_ids
        diff = sum(1 for a, b in zip(ids, plain) if a != b) + abs(len(ids) - len(plain))
        print(f"{name}: {len(text)} chars -> {len(ids)} ids in {dt:.2f}s; plain GGUF "
              f"conversion differs in {diff} positions ({len(plain)} ids)", file=sys.stderr)
        golden["novels"].append({"name": name, "chars": len(text), "count": len(ids),
                                 "fnv1a64": f"{fnv1a64_ids(ids):016x}", "first": ids[:64],
                                 "last": ids[-64:]})
    for s in TRICKY:
        ids = reference(s).input_ids
        golden["tricky"].append({
            "text": s, "ids": ids,
            "decoded": reference.decode(ids),
            "decoded_skip_special": reference.decode(ids, skip_special_tokens=True),
            "ids_plain_conversion": converted(s).input_ids})
    golden["chat"] = render_templates(reference)
    golden["tiny"] = make_tiny()
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)", file=sys.stderr)


def check_export(export_dir):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    _, reference = load_reference()
    fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(export_dir, "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(export_dir)
    ok = True
    for label, tok in (("PreTrainedTokenizerFast", fast), ("AutoTokenizer", auto)):
        for name in NOVELS:
            text = read_novel(name)
            same = tok(text).input_ids == reference(text).input_ids
            ok &= same
            print(f"{label} {name}: {'same ids' if same else 'DIFFERENT ids'}", file=sys.stderr)
        for s in TRICKY:
            ids = tok(s).input_ids
            if ids != reference(s).input_ids or tok.decode(ids) != reference.decode(ids):
                ok = False
                print(f"{label} differs on {s!r}", file=sys.stderr)
    conv = CONVERSATIONS[2]
    for gen in (False, True):
        a = auto.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
        b = reference.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
        ok &= a == b
    print(f"AutoTokenizer class {type(auto).__name__}, bos={auto.bos_token!r} "
          f"eos={auto.eos_token!r}; chat template renders the same: {ok}", file=sys.stderr)
    print("EXPORT OK" if ok else "EXPORT MISMATCH", file=sys.stderr)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check-export", metavar="DIR")
    args = ap.parse_args()
    if args.check_export:
        return check_export(args.check_export)
    make_golden()
    return 0


if __name__ == "__main__":
    sys.exit(main())
