#!/usr/bin/env python3
"""Writes tests/data/gemma3_tokenizer_golden.json: Gemma 3 token ids from the sentencepiece library.

Reference tokenizer. The sentencepiece library itself (pip package `sentencepiece`), loaded with
a ModelProto rebuilt from the GGUF's tokenizer metadata, since the original tokenizer.model is
not part of the GGUF:
  - pieces, scores and types from tokenizer.ggml.tokens / .scores / .token_type (GGUF numbers
    the types as sentencepiece does); the piece named by tokenizer.ggml.unknown_token_id becomes
    UNKNOWN (llama.cpp's converter marks <unk> CONTROL, and sentencepiece needs one UNKNOWN);
  - user-defined pieces with their spaces written back as "▁": llama.cpp's converter replaced
    "▁" by " " in them ("▁▁" became "  "), sentencepiece matches them in the normalized text;
  - trainer_spec: model_type BPE, byte_fallback true, split_digits true (Gemma's; training only);
  - normalizer_spec: "identity" (no charsmap), escape_whitespaces true, remove_extra_whitespaces
    false, add_dummy_prefix = tokenizer.ggml.add_space_prefix (false for Gemma 3).

transformers' GGUF tokenizer conversion (AutoTokenizer.from_pretrained(dir, gguf_file=...)) is
not the reference: it is a reimplementation (a `tokenizers` BPE whose merges are derived from the
scores), not sentencepiece. Its gemma3 conversion has been reported to split words into single
characters; transformers 5.25 no longer does, but still differs from sentencepiece on runs of
more than 31 spaces (two of the golden texts). `--compare-transformers` prints how many golden
texts the installed version's conversion encodes differently (slow: about a minute).

Texts: Emma and Pride and Prejudice whole (id count, hash, first and last ids), the first 200
paragraphs of Emma and 60 of Pride and Prejudice (assets/text, written by
`awq data austen`), the opening of Emma with its runs of blank lines, and hand-written hard
cases (whitespace runs, tabs, digits, punctuation, accents, CJK, emoji, byte fallback, control
and user-defined piece spellings). Ids are without BOS. Also Gemma 3's chat template rendered
by jinja2 as transformers renders it, for the chat tests, and two small vocabularies
(TINY_MODELS) that reach what Gemma's does not: the dummy prefix, no byte fallback, UNUSED
pieces, equal scores.

Usage:
  python3 tools/make_spm_golden.py [--gguf PATH] [--compare-transformers]
      # writes tests/data/gemma3_tokenizer_golden.json
  python3 tools/make_spm_golden.py --check-export DIR
      # loads DIR/tokenizer.json (written by awq.cpp's WriteHfTokenizerFiles, e.g. in a
      # quantized checkpoint folder) with transformers and checks its ids against the golden
      # file on every text and both novels, and its chat template rendering.
"""

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GGUF_PATH = os.path.join(REPO, "assets", "models", "gemma-3-270m-q4_k_m.gguf")
TEXT_DIR = os.path.join(REPO, "assets", "text")
OUT = os.path.join(REPO, "tests", "data", "gemma3_tokenizer_golden.json")

EMMA_PARAGRAPHS = 200
PRIDE_PARAGRAPHS = 60
PRIDE_SKIP = 40  # paragraphs past the title page

NOVELS = ["emma", "prideprejudice"]  # whole novels: id count, hash, first and last ids

SPACE = "\u2581"

HARD_CASES = [
    "",
    " ",
    "  ",
    "   ",
    "a",
    "Hello world",
    " Hello world",
    "Hello world ",
    "  leading and trailing  ",
    "multiple   internal    spaces     here",
    " " * 40 + "forty spaces then text",
    "x" + " " * 31 + "y" + " " * 32 + "z",
    "\n",
    "\n\n",
    "line one\nline two\n\nparagraph\n\n\n\nfour newlines\n" + "\n" * 35 + "end",
    " \n \n  \n",
    "windows\r\nline\r\nendings\r\n",
    "\ttab\tseparated\t\tvalues\t",
    "\t\t\t\t\tfive tabs",
    "mixed \t \n \t whitespace",
    "Numbers: 0 1 12 123 1234 12345 3.14159 1,000,000 2024-07-26 007",
    "31415926535897932384626433832795028841971693993751058209749445923078164062862089986",
    "Prices: $4.99, €12,50, £3; 50% off; #1; 1st 2nd 3rd 4th",
    "Punctuation!!! ??? ... --- (parens) [brackets] {braces} \"quotes\" 'single' — dash – en",
    "“Curly quotes,” she said, ‘and apostrophes’… isn’t it?",
    "email@example.com https://example.com/path?q=1&r=2#frag",
    "def foo(x):\n    return x ** 2  # comment\n",
    "<html><body><b>bold</b> and <i>italic</i> <code>x</code></body></html>",
    "a<b>b</b>c <table><tr><td>cell</td></tr></table>",
    "<b><b><b>",
    "text> </b> and x> </y",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<bos>not a bos<eos> <pad> <unk> <mask> [multimodal] <start_of_image> <unused0>",
    "<start_of_turn",
    "Café naïve résumé façade Ångström São Paulo Zürich",
    "Ελληνικά русский язык עברית العربية हिन्दी ไทย",
    "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ 한국어 텍스트",
    "Emoji: 😀👍🏽🇺🇸 and ❤️ and 👨‍👩‍👧 🦀🦙",
    "Rare characters: \U0001F9FF \u2603 \U00010348 \U0001D11E \u0D9E \U00013000 \u4DC0",
    "Private use and specials: \uE000\uF8FF\U000F0000 \uFFFD \u0000 \u0007 \u007F",
    "Combining: e\u0301 a\u0308 n\u0303 \u0915\u094D\u0937",
    "Zero width: a\u200Bb\u200Cc\u200Dd\uFEFFe",
    "non\u00a0breaking\u2003em space\u2028line sep\u3000ideographic",
    "literal " + SPACE + " lower one eighth block " + SPACE + SPACE,
    "ALL CAPS SHOUTING AND MiXeD cAsE wOrDs",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" * 300,
    "ab" * 150,
    "The quick brown fox jumps over the lazy dog. " * 8,
]

# Gemma 3's chat template as Google ships it (tokenizer_config.json of the Gemma 3 models); the
# GGUF has no tokenizer.chat_template, and awq.cpp falls back to this text for Gemma vocabularies.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4"}],
    [{"role": "system", "content": "Be kind.\nAlways."},
     {"role": "user", "content": "  Tell me about Emma Woodhouse.  "},
     {"role": "assistant", "content": "She is handsome, clever, and rich.\n"},
     {"role": "user", "content": "And Mr. Knightley?"}],
]


# Two small vocabularies for the corners Gemma does not reach, encoded by sentencepiece as well:
# the dummy prefix (Llama-2 style), no byte fallback (runs of unknown characters become one
# <unk>), an UNUSED piece (merged, then split back), equal scores (leftmost pair first), a piece
# with an inner "▁" ("a▁b"), user-defined pieces; and byte fallback with a dummy prefix off.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
TINY_MODELS = [
    {
        "name": "prefix_unk_unused",
        "add_dummy_prefix": True,
        "pieces": [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL),
                   (SPACE, 0.0, NORMAL), ("a", 0.0, NORMAL), ("b", 0.0, NORMAL),
                   ("c", 0.0, NORMAL), ("d", 0.0, NORMAL),
                   ("ab", -1.0, NORMAL), ("bc", -1.0, NORMAL), ("cd", -2.0, NORMAL),
                   ("abc", -3.0, NORMAL), ("bcd", -0.5, NORMAL),
                   (SPACE + "a", -1.5, NORMAL), (SPACE + "b", -1.1, NORMAL),
                   (SPACE + "ab", -2.5, NORMAL), ("a" + SPACE + "b", -1.2, NORMAL),
                   ("da", -0.8, UNUSED), ("dab", -0.7, NORMAL), ("dd", -0.9, UNUSED),
                   ("<u>", 0.0, USER_DEFINED), (SPACE + SPACE, 0.0, USER_DEFINED)],
        "texts": ["", " ", "  ", "a", "abc", "bcd", "abcd", "abcbcd", "a b", "ab ab", "a  b",
                  "a   b", "da", "dab", "dd", "ddd", "xyz", "axyzb", "x y", "a<u>b", "<u><u>",
                  " a", "a b c d", "dd aa bb", "b a b a b", "<s>a</s>"],
    },
    {
        "name": "bytes_no_prefix",
        "add_dummy_prefix": False,
        "pieces": ([("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)] +
                   [(f"<0x{b:02X}>", 0.0, BYTE) for b in range(256)] +
                   [(c, 0.0, NORMAL) for c in [SPACE, "h", "e", "l", "o", "w", "r", "d"]] +
                   [("he", -1.0, NORMAL), ("ll", -2.0, NORMAL), ("llo", -3.0, NORMAL),
                    ("hello", -4.0, NORMAL), (SPACE + "w", -5.0, NORMAL),
                    ("or", -6.0, NORMAL), (SPACE + "wor", -7.0, NORMAL),
                    (SPACE + "world", -8.0, NORMAL), ("<b>", 0.0, USER_DEFINED)]),
        "texts": ["", " ", "hello", "h\u00e9llo", "hello world", "\u65e5\u672c", "world",
                  " hello", "hello<b>world</b>", "\U0001F600!", "\n\t"],
    },
]


def tiny_processor(model):
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.vocab_size = len(model["pieces"])
    proto.trainer_spec.byte_fallback = any(t == BYTE for _, _, t in model["pieces"])
    proto.trainer_spec.unk_id = 0
    proto.trainer_spec.bos_id = 1
    proto.trainer_spec.eos_id = 2
    proto.trainer_spec.pad_id = -1
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = model["add_dummy_prefix"]
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    for piece, score, typ in model["pieces"]:
        p = proto.pieces.add()
        p.piece, p.score, p.type = piece, score, typ
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(proto.SerializeToString())
    return sp


def make_tiny():
    out = []
    for model in TINY_MODELS:
        sp = tiny_processor(model)
        cases = []
        for text in model["texts"]:
            ids = sp.encode(text)
            cases.append({"text": text, "ids": ids, "decoded": sp.decode(ids)})
        out.append({"name": model["name"], "add_dummy_prefix": model["add_dummy_prefix"],
                    "pieces": [list(p) for p in model["pieces"]], "cases": cases})
    return out


def fnv1a64_ids(ids):
    """FNV-1a 64 over the ids written as little-endian int32 bytes (as tools/make_tokenizer_golden.py)."""
    h = 0xCBF29CE484222325
    data = b"".join(int(i).to_bytes(4, "little", signed=True) for i in ids)
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def read_gguf(path):
    from gguf import GGUFReader
    r = GGUFReader(path)

    def get(key, default=None):
        f = r.fields.get(key)
        return default if f is None else f.contents()

    meta = {
        "tokens": get("tokenizer.ggml.tokens"),
        "scores": get("tokenizer.ggml.scores"),
        "types": get("tokenizer.ggml.token_type"),
        "model": get("tokenizer.ggml.model"),
        "bos": get("tokenizer.ggml.bos_token_id"),
        "eos": get("tokenizer.ggml.eos_token_id"),
        "unk": get("tokenizer.ggml.unknown_token_id"),
        "pad": get("tokenizer.ggml.padding_token_id", -1),
        "add_bos": bool(get("tokenizer.ggml.add_bos_token", True)),
        "add_space_prefix": bool(get("tokenizer.ggml.add_space_prefix", True)),
    }
    if meta["model"] != "llama":
        sys.exit(f"{path}: tokenizer.ggml.model is {meta['model']!r}, expected 'llama'")
    return meta


def build_processor(meta):
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    ts = proto.trainer_spec
    ts.model_type = pb.TrainerSpec.BPE
    ts.vocab_size = len(meta["tokens"])
    ts.byte_fallback = True
    ts.split_digits = True
    ts.unk_id = meta["unk"]
    ts.bos_id = meta["bos"]
    ts.eos_id = meta["eos"]
    ts.pad_id = meta["pad"]
    ns = proto.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = meta["add_space_prefix"]
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    USER_DEFINED = pb.ModelProto.SentencePiece.USER_DEFINED
    for i, (piece, score, typ) in enumerate(zip(meta["tokens"], meta["scores"], meta["types"])):
        p = proto.pieces.add()
        typ = int(typ)
        if i == meta["unk"]:
            typ = pb.ModelProto.SentencePiece.UNKNOWN
        if typ == USER_DEFINED:
            piece = piece.replace(" ", SPACE)
        p.piece = piece
        p.score = float(score)
        p.type = typ
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(proto.SerializeToString())
    return sp


def read_novel(name):
    with open(os.path.join(TEXT_DIR, name + ".txt"), encoding="utf-8", newline="") as f:
        return f.read()


def paragraphs(name, skip, count):
    text = read_novel(name)
    paras = [p for p in text.split("\n\n") if p.strip()]
    return paras[skip:skip + count], text


def render_chat(messages, add_generation_prompt, bos):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    # transformers' settings for chat templates.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(GEMMA3_TEMPLATE).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos)


def check_export(export_dir, golden_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    with open(golden_path, encoding="utf-8") as f:
        golden = json.load(f)
    failures = 0
    for label, tok in [
            ("PreTrainedTokenizerFast",
             PreTrainedTokenizerFast(tokenizer_file=os.path.join(export_dir, "tokenizer.json"))),
            ("AutoTokenizer", AutoTokenizer.from_pretrained(export_dir))]:
        bad = 0
        for c in golden["cases"]:
            # sentencepiece never matches control tokens; transformers does unless told not to.
            ids = tok(c["text"], add_special_tokens=False, split_special_tokens=True)["input_ids"]
            if ids != c["ids"]:
                bad += 1
                if bad <= 3:
                    print(f"  {label}: {c['text'][:60]!r}: {ids[:12]} != {c['ids'][:12]}")
        for novel in golden["novels"]:
            ids = tok(read_novel(novel["name"]), add_special_tokens=False)["input_ids"]
            if f"{fnv1a64_ids(ids):016x}" != novel["fnv1a64"]:
                bad += 1
                print(f"  {label}: {novel['name']}: {len(ids)} ids, hash differs")
        print(f"{label}: {bad} of {len(golden['cases']) + len(golden['novels'])} texts differ")
        failures += bad
    auto = AutoTokenizer.from_pretrained(export_dir)
    bos_ok = auto("Hello")["input_ids"][0] == golden["bos_id"]
    chats_ok = all(auto.apply_chat_template(c["messages"], tokenize=False,
                                            add_generation_prompt=c["add_generation_prompt"])
                   == c["text"] for c in golden["chats"])
    print(f"BOS added: {bos_ok}; chat template renders as the golden: {chats_ok}")
    return 0 if failures == 0 and bos_ok and chats_ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=GGUF_PATH)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--compare-transformers", action="store_true")
    ap.add_argument("--check-export", metavar="DIR")
    args = ap.parse_args()
    if args.check_export:
        sys.exit(check_export(args.check_export, args.out))

    meta = read_gguf(args.gguf)
    sp = build_processor(meta)

    emma, emma_text = paragraphs("emma", 0, EMMA_PARAGRAPHS)
    pride, _ = paragraphs("prideprejudice", PRIDE_SKIP, PRIDE_PARAGRAPHS)
    texts = ([("hard", t) for t in HARD_CASES] +
             [("emma", t) for t in emma] + [("pride", t) for t in pride] +
             [("emma_opening", emma_text[:6000])])

    cases = []
    for source, text in texts:
        ids = sp.encode(text)
        # The reference must itself be lossless here, or the round trip test is meaningless.
        back = sp.decode(ids)
        lossless = back == text.replace(SPACE, " ")
        cases.append({"source": source, "text": text, "ids": ids, "lossless": lossless})

    byte_ids = {i for i, t in enumerate(meta["types"]) if int(t) == 6}
    n_fallback = sum(1 for c in cases if any(i in byte_ids for i in c["ids"]))
    bos = meta["tokens"][meta["bos"]]
    chats = []
    for messages in CONVERSATIONS:
        for gen in (False, True):
            chats.append({"messages": messages, "add_generation_prompt": gen,
                          "text": render_chat(messages, gen, bos)})

    novels = []
    for name in NOVELS:
        ids = sp.encode(read_novel(name))
        novels.append({"name": name, "count": len(ids), "fnv1a64": f"{fnv1a64_ids(ids):016x}",
                       "first": ids[:32], "last": ids[-32:]})

    golden = {
        "about": "Gemma 3 token ids from the sentencepiece library; tools/make_spm_golden.py",
        "gguf": os.path.basename(args.gguf),
        "vocab_size": len(meta["tokens"]),
        "bos_id": meta["bos"],
        "eos_id": meta["eos"],
        "add_bos": meta["add_bos"],
        "add_space_prefix": meta["add_space_prefix"],
        "chat_template": GEMMA3_TEMPLATE,
        "chats": chats,
        "novels": novels,
        "tiny": make_tiny(),
        "cases": cases,
    }
    # One case per line keeps the file diffable; ids without spaces keep it small.
    lines = json.dumps({k: v for k, v in golden.items() if k != "cases"}, ensure_ascii=False,
                       indent=1)[:-2]
    lines += ',\n "cases": [\n' + ",\n".join(
        "  " + json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases) + "\n ]\n}\n"
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(lines)
    n_ids = sum(len(c["ids"]) for c in cases)
    print(f"wrote {args.out}: {len(cases)} texts, {n_ids} ids, {n_fallback} with byte fallback, "
          f"{sum(not c['lossless'] for c in cases)} not lossless, {os.path.getsize(args.out)} bytes")

    if args.compare_transformers:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(args.gguf)),
                                            gguf_file=os.path.basename(args.gguf))
        differ = [c for c in cases
                  if tok(c["text"], add_special_tokens=False,
                         split_special_tokens=True)["input_ids"] != c["ids"]]
        print(f"transformers' GGUF conversion ({type(tok).__name__}) differs from sentencepiece "
              f"on {len(differ)} of {len(cases)} texts")
        for c in differ[:5]:
            print("  ", repr(c["text"][:60]))


if __name__ == "__main__":
    main()
