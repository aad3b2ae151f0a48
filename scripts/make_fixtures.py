#!/usr/bin/env python3
"""Builds Refinery's reference fixtures with Hugging Face tokenizers + transformers (PyTorch, CPU).

Writes small random-init checkpoints, tokenizers trained here on a corpus written by us, chat
template renderings, logits, masked losses and greedy continuations. The Swift tests compare
against these files and never need Python.

    python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements.txt
    .venv/bin/python scripts/make_fixtures.py

Outputs (all small, committed):
    Tests/RefineryTextTests/Fixtures/tokenizers/<name>/{tokenizer.json,cases.json}
    Tests/RefineryTextTests/Fixtures/templates/cases.json
    Tests/RefineryModelTests/Fixtures/<model>/{config.json,model*.safetensors,tokenizer*.json,
        eval.jsonl,expected.json,expected_logits.safetensors}
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast,
                          Qwen2Config, Qwen2ForCausalLM)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import templates  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT_FIXTURES = os.path.join(ROOT, "Tests", "RefineryTextTests", "Fixtures")
MODEL_FIXTURES = os.path.join(ROOT, "Tests", "RefineryModelTests", "Fixtures")

EXPECTED_VERSIONS = {"transformers": "5.23.0", "tokenizers": "0.23.3", "torch": "2.15.0"}

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = """Refinery turns raw articles into instruction data and fine-tunes small language models on it.
The quick brown fox jumps over the lazy dog. It's what they'll say, isn't it? We've seen it; I'm sure.
Machine learning engineers measure everything: loss, throughput, memory, and the cost of every API call.
def tokenize(text: str) -> list[int]:
    return [ord(c) for c in text if c.isalnum()]
for (int i = 0; i < 42; ++i) { total += values[i] * 3.14159; }
Numbers like 12345, 2024-11-25, 3.5e-7 and 1,000,000 appear in technical writing all the time.
数据清洗是训练语言模型的重要步骤。我们把文章切成句子，然后生成问题和答案。
机器学习模型需要大量高质量的数据。
Emoji appear too 🙂🚀 and so do accents: café, naïve, déjà vu, Ελληνικά, русский текст.
    Indented lines, tabs\tand   multiple   spaces   matter for code.
The assistant answers questions clearly. The user asks about training, evaluation and deployment.
Gradient accumulation, packing, LoRA adapters and learning-rate schedules are common in fine-tuning.
"""


def corpus_lines():
    lines = CORPUS.splitlines()
    return lines * 20


TOKENIZER_CASES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nthree blank lines",
    "Numbers: 1234567890 and 3.14159, 2024-11-25.",
    "数据清洗是训练语言模型的重要步骤。",
    "完全没见过的汉字：龘靐齉。",
    "Emoji 🙂🚀🧪 and a family 👨‍👩‍👧 emoji.",
    "def f(x):\n    return x ** 2  # square\n",
    "It's they'll WE'VE I'M don't",
    "café naïve déjà vu Ελληνικά",
    "<|im_start|>user\nHi there<|im_end|>\n",
    "text before<|eot_id|>text after",
    "<s>[INST] question [/INST] answer</s>",
    "   ",
    "",
    "a\u00a0b\u2003c",
    "mixed  \n  whitespace \r\n end",
]


def byte_level_tokenizer(pattern, specials, bos, use_digits=False):
    tok = Tokenizer(models.BPE())
    if pattern is not None:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ])
    else:
        parts = [pre_tokenizers.Digits(individual_digits=True)] if use_digits else []
        parts.append(pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence(parts)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer)
    post = [processors.ByteLevel(trim_offsets=False)]
    if bos is not None:
        post.append(processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                  special_tokens=[(bos, tok.token_to_id(bos))]))
    tok.post_processor = processors.Sequence(post)
    return tok


def sentencepiece_tokenizer(style):
    """Llama 2 / TinyLlama style (Prepend+Replace normalizer) or Mistral style (Metaspace pre-tokenizer)."""
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=2, show_progress=False)
    trainer_tok.train_from_iterator(corpus_lines(), trainer)
    trained = json.loads(trainer_tok.to_str())["model"]

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = trained["merges"]
    model = models.BPE(vocab=vocab, merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges],
                       unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(model)
    tok.add_special_tokens([AddedToken("<unk>", normalized=False, special=True),
                            AddedToken("<s>", normalized=False, special=True),
                            AddedToken("</s>", normalized=False, special=True)])
    if style == "llama2":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        tok.pre_tokenizer = None
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False),
                                         decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok


def build_tokenizers():
    llama3_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                       "<|eot_id|>", "<|im_start|>", "<|im_end|>"]
    qwen_specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    return {
        "llama3-bytelevel": byte_level_tokenizer(LLAMA3_PATTERN, llama3_specials, "<|begin_of_text|>"),
        "qwen2-bytelevel": byte_level_tokenizer(QWEN2_PATTERN, qwen_specials, None),
        "smollm-gpt2-digits": byte_level_tokenizer(None, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None,
                                                    use_digits=True),
        "llama2-sentencepiece": sentencepiece_tokenizer("llama2"),
        "mistral-metaspace": sentencepiece_tokenizer("mistral"),
    }


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
        f.write("\n")


def tokenizer_cases(tok):
    cases = []
    for text in TOKENIZER_CASES:
        with_special = tok.encode(text)
        plain = tok.encode(text, add_special_tokens=False)
        cases.append({
            "text": text,
            "ids": with_special.ids,
            "ids_no_special": plain.ids,
            "offsets_no_special": [list(o) for o in plain.offsets],
            "decoded": tok.decode(with_special.ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(with_special.ids, skip_special_tokens=True),
        })
    return cases


CONVERSATIONS = [
    [{"role": "user", "content": "Hi! What is LoRA?"},
     {"role": "assistant", "content": "LoRA adds small low-rank matrices to frozen weights."}],
    [{"role": "system", "content": "You answer briefly."},
     {"role": "user", "content": "Name a prime number."},
     {"role": "assistant", "content": "  Seven.  "},
     {"role": "user", "content": "And an even one?"},
     {"role": "assistant", "content": "Two is the only even prime."}],
    [{"role": "user", "content": "数据是什么？🙂"},
     {"role": "assistant", "content": "数据是信息。\nIt has \"quotes\" and a tab\there."}],
    [{"role": "user", "content": "Only a question, with \\ backslash and 'quotes'?"}],
    [{"role": "user", "content": "Two user turns"}, {"role": "user", "content": "in a row."}],
]


def template_cases():
    cases = []
    all_templates = dict(templates.BUILTIN)
    all_templates.update(templates.TEST_ONLY)
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), bos_token="<s>", eos_token="</s>")
    for name, text in all_templates.items():
        for index, conversation in enumerate(CONVERSATIONS):
            for add_generation_prompt in (False, True):
                case = {"template": name, "conversation": index, "add_generation_prompt": add_generation_prompt,
                        "bos_token": "<s>", "eos_token": "</s>", "messages": conversation}
                try:
                    case["expected"] = tok.apply_chat_template(conversation, chat_template=text, tokenize=False,
                                                               add_generation_prompt=add_generation_prompt)
                except Exception as error:  # raise_exception in the template
                    case["error"] = str(error)
                cases.append(case)
    return {"templates": {**templates.BUILTIN, **templates.TEST_ONLY}, "builtin": sorted(templates.BUILTIN),
            "cases": cases}


# ---------------------------------------------------------------------------------------------
# Models

EVAL_OPENAI = [
    {"messages": CONVERSATIONS[0]},
    {"messages": CONVERSATIONS[1]},
    {"messages": CONVERSATIONS[2]},
]
EVAL_SHAREGPT = [
    {"conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hello there, friend."},
                       {"from": "gpt", "value": "Hello! How can I help you today?"}]},
    {"conversations": [{"from": "human", "value": "What is 2 + 2?"}, {"from": "gpt", "value": "It is 4."},
                       {"from": "human", "value": "And 3 + 3?"}, {"from": "gpt", "value": "6, of course."}]},
]
EVAL_ALPACA = [
    {"instruction": "Summarise the text.", "input": "Refinery cleans data and trains models.",
     "output": "It prepares data and fine-tunes models."},
    {"instruction": "Give a synonym for quick.", "input": "", "output": "Fast."},
]

ROLE_FROM_SHAREGPT = {"system": "system", "human": "user", "gpt": "assistant"}


def to_messages(row):
    if "messages" in row:
        return row["messages"]
    if "conversations" in row:
        return [{"role": ROLE_FROM_SHAREGPT[t["from"]], "content": t["value"]} for t in row["conversations"]]
    instruction = row["instruction"] + ("\n\n" + row["input"] if row.get("input") else "")
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": row["output"]}]


def trained_spans(text, messages, special_tokens):
    """DESIGN §3.2: each assistant content, plus the end-of-turn special token right after it."""
    spans, cursor = [], 0
    for message in messages:
        if message["role"] != "assistant":
            continue
        content = message["content"]
        start = text.find(content, cursor)
        if start < 0:
            content = content.strip()
            start = text.find(content, cursor)
        assert start >= 0, "assistant content not found in rendered text"
        end = start + len(content)
        for marker in sorted(special_tokens, key=len, reverse=True):
            if text.startswith(marker, end):
                end += len(marker)
                break
        spans.append((start, end))
        cursor = end
    return spans


def masked_loss(model, tok, hf_tok, rows, template):
    total, count = 0.0, 0
    per_sample = []
    specials = [t.content for t in tok.get_added_tokens_decoder().values() if t.special]
    for row in rows:
        messages = to_messages(row)
        text = hf_tok.apply_chat_template(messages, chat_template=template, tokenize=False)
        encoding = tok.encode(text, add_special_tokens=False)
        spans = trained_spans(text, messages, specials)
        ids = encoding.ids
        trained = [any(s <= o[0] < e for s, e in spans) for o in encoding.offsets]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        sample_sum, sample_count = 0.0, 0
        for t in range(1, len(ids)):
            if trained[t]:
                sample_sum += -logp[t - 1, ids[t]].item()
                sample_count += 1
        per_sample.append({"loss_sum": sample_sum, "tokens": sample_count, "ids": ids,
                           "trained": [i for i, flag in enumerate(trained) if flag]})
        total += sample_sum
        count += sample_count
    return {"loss": total / count, "tokens": count, "samples": len(rows), "per_sample": per_sample}


def build_model(kind, vocab_size, bos_id, eos_id):
    torch.manual_seed({"llama": 1, "qwen2": 2, "mistral": 3}[kind])
    common = dict(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=256, bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=None)
    if kind == "llama":
        config = LlamaConfig(intermediate_size=128, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
                             tie_word_embeddings=False,
                             rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": 32},
                             **common)
        model = LlamaForCausalLM(config)
    elif kind == "qwen2":
        config = Qwen2Config(intermediate_size=160, num_key_value_heads=2, rms_norm_eps=1e-6,
                             tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                             **common)
        model = Qwen2ForCausalLM(config)
    else:
        config = MistralConfig(intermediate_size=96, num_key_value_heads=1, head_dim=32, rms_norm_eps=1e-5,
                               tie_word_embeddings=False, sliding_window=None,
                               rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
                               **common)
        model = MistralForCausalLM(config)
    # Random init with a larger scale than HF's 0.02 so logits are far from uniform and
    # greedy continuations are not decided by ties.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(1.0 + 0.1 * torch.randn_like(parameter))
            elif name.endswith("bias"):
                parameter.copy_(0.1 * torch.randn_like(parameter))
            else:
                parameter.copy_(0.15 * torch.randn_like(parameter))
    model.eval()
    return model


def save_model_fixture(name, kind, tok_name, tok, template, eval_rows, dtype, shard):
    out = os.path.join(MODEL_FIXTURES, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    specials = [t.content for t in tok.get_added_tokens_decoder().values() if t.special]
    if tok_name.startswith("llama3"):
        bos, eos = "<|begin_of_text|>", "<|eot_id|>"
    elif tok_name.startswith("qwen2"):
        bos, eos = None, "<|im_end|>"
    else:
        bos, eos = "<s>", "</s>"
    model = build_model(kind, tok.get_vocab_size(), tok.token_to_id(bos) if bos else None, tok.token_to_id(eos))
    if dtype != torch.float32:
        # Round weights to the stored dtype, then compute in float32 as Refinery does.
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(parameter.to(dtype).to(torch.float32))
    model.save_pretrained(out, max_shard_size="60KB" if shard else "1GB")
    if dtype != torch.float32:
        reload = type(model).from_pretrained(out, dtype=torch.float32)
        # Re-save with the weights in the requested dtype.
        for f in os.listdir(out):
            if f.endswith(".safetensors") or f.endswith(".index.json"):
                os.remove(os.path.join(out, f))
        reload.to(dtype).save_pretrained(out, max_shard_size="60KB" if shard else "1GB")
        config = json.load(open(os.path.join(out, "config.json")))
        assert config.get("dtype", config.get("torch_dtype")) in ("bfloat16", "float16"), config
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                     additional_special_tokens=[s for s in specials if s not in (bos, eos)])
    hf_tok.chat_template = template
    hf_tok.save_pretrained(out)

    with open(os.path.join(out, "eval.jsonl"), "w", encoding="utf-8") as f:
        for row in eval_rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    logits_texts = ["Hello world, the quick brown fox.", "数据 and code: def f(x): return 42"]
    logits = {}
    logit_ids = []
    for i, text in enumerate(logits_texts):
        ids = tok.encode(text).ids
        logit_ids.append(ids)
        with torch.no_grad():
            logits[f"logits.{i}"] = model(torch.tensor([ids])).logits[0].contiguous()
    save_file(logits, os.path.join(out, "expected_logits.safetensors"))

    prompt = "The assistant answers"
    prompt_ids = tok.encode(prompt).ids
    with torch.no_grad():
        generated = model.generate(torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=16,
                                   eos_token_id=tok.token_to_id(eos), pad_token_id=tok.token_to_id(eos))
    greedy = generated[0, len(prompt_ids):].tolist()

    expected = {
        "model_type": kind,
        "logits_texts": logits_texts,
        "logits_ids": logit_ids,
        "greedy": {"prompt": prompt, "prompt_ids": prompt_ids, "max_new_tokens": 16, "ids": greedy,
                   "text": tok.decode(greedy, skip_special_tokens=True)},
        "eval": masked_loss(model, tok, hf_tok, eval_rows, template),
        "eval_file": "eval.jsonl",
    }
    write_json(os.path.join(out, "expected.json"), expected)
    return out


def main():
    versions = {"transformers": transformers.__version__, "tokenizers": __import__("tokenizers").__version__,
                "torch": torch.__version__.split("+")[0]}
    if versions != EXPECTED_VERSIONS:
        print(f"warning: versions {versions} differ from pinned {EXPECTED_VERSIONS}", file=sys.stderr)
    torch.set_num_threads(1)
    toks = build_tokenizers()
    tok_root = os.path.join(TEXT_FIXTURES, "tokenizers")
    shutil.rmtree(tok_root, ignore_errors=True)
    for name, tok in toks.items():
        directory = os.path.join(tok_root, name)
        os.makedirs(directory)
        tok.save(os.path.join(directory, "tokenizer.json"))
        write_json(os.path.join(directory, "cases.json"), tokenizer_cases(tok))

    os.makedirs(os.path.join(TEXT_FIXTURES, "templates"), exist_ok=True)
    write_json(os.path.join(TEXT_FIXTURES, "templates", "cases.json"), template_cases())

    save_model_fixture("llama-gqa", "llama", "llama3-bytelevel", toks["llama3-bytelevel"], templates.LLAMA3,
                       EVAL_OPENAI, torch.float32, shard=True)
    save_model_fixture("qwen2-tied", "qwen2", "qwen2-bytelevel", toks["qwen2-bytelevel"], templates.QWEN_CHATML,
                       EVAL_SHAREGPT, torch.bfloat16, shard=False)
    save_model_fixture("mistral-sp", "mistral", "mistral-metaspace", toks["mistral-metaspace"], templates.MISTRAL,
                       EVAL_ALPACA, torch.float16, shard=False)
    write_json(os.path.join(MODEL_FIXTURES, "versions.json"), versions)
    print("fixtures written:", versions)


if __name__ == "__main__":
    main()
