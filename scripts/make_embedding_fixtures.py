#!/usr/bin/env python3
"""Reference values for Refinery's WordPiece tokenizer and BERT sentence embeddings.

    .venv/bin/python scripts/make_embedding_fixtures.py

Writes (small, committed):
    Tests/RefineryTextTests/Fixtures/tokenizers/bert-wordpiece-{uncased,cased}/{tokenizer.json,cases.json}
        WordPiece tokenizers trained here on make_fixtures.py's corpus, with tokenizers' ids,
        offsets and decodings of the shared cases plus BERT-specific ones.
    Tests/RefineryModelTests/Fixtures/minibert/...
        a random-init BertModel saved as a sentence-transformers folder (Transformer with
        max_seq_length 24, mean Pooling, Normalize) and expected.json: sentence-transformers'
        embeddings of the sentences for mean (normalized), cls, max and mean_sqrt_len pooling.
Pinned versions: scripts/requirements.txt.
"""
import json
import os
import shutil
import sys

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
import transformers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast
import sentence_transformers
from sentence_transformers import SentenceTransformer
from sentence_transformers.models import Normalize, Pooling, Transformer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import TOKENIZER_CASES, corpus_lines, write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT_FIXTURES = os.path.join(ROOT, "Tests", "RefineryTextTests", "Fixtures", "tokenizers")
MODEL_FIXTURE = os.path.join(ROOT, "Tests", "RefineryModelTests", "Fixtures", "minibert")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

BERT_CASES = [
    "UPPER Case and MiXeD",
    "Ünïcödé ÀÇÇËNTS stay or go",
    "control\u0000chars\u0007and\ufffdreplacement\u200bzero-width",
    "punctuation!!! (brackets) [squares] {braces} \"quotes\" 'single' $5 +1 <a> ^ ` | ~ ¿qué? «guillemets» — dash",
    "a" * 120,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "中文混合English文本",
    "[CLS] literal special tokens [SEP] in text [MASK]",
    "e-mail: someone@example.com, url: https://example.com/path?x=1",
]

SENTENCES = [
    "Refinery turns raw articles into instruction data.",
    "The quick brown fox jumps over the lazy dog.",
    "A fast brown fox leaps over a lazy dog!",
    "Gradient accumulation, packing, LoRA adapters and learning-rate schedules are common in fine-tuning. " * 3,
    "数据清洗是训练语言模型的重要步骤。",
    "café naïve déjà vu",
    "",
    "?",
    "Numbers like 12345 and 3.5e-7 appear in technical writing.",
]


def wordpiece_tokenizer(cased):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    if cased:
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False,
                                                    lowercase=False)
    else:
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                    lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    trainer = trainers.WordPieceTrainer(vocab_size=500, min_frequency=2, special_tokens=SPECIALS,
                                        show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if cased:
        tok.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))
    else:
        tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                           special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def cases(tok):
    result = []
    for text in TOKENIZER_CASES + BERT_CASES:
        with_special = tok.encode(text)
        plain = tok.encode(text, add_special_tokens=False)
        result.append({
            "text": text,
            "ids": with_special.ids,
            "ids_no_special": plain.ids,
            "offsets_no_special": [list(o) for o in plain.offsets],
            "decoded": tok.decode(with_special.ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(with_special.ids, skip_special_tokens=True),
        })
    return result


def build_model(tok):
    torch.manual_seed(7)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12,
                        hidden_act="gelu", initializer_range=0.3, pad_token_id=0)
    model = BertModel(config).eval()
    with torch.no_grad():  # LayerNorm and biases away from their identity init, so every term counts
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.2)
    return model


def main():
    for name, cased in (("bert-wordpiece-uncased", False), ("bert-wordpiece-cased", True)):
        tok = wordpiece_tokenizer(cased)
        directory = os.path.join(TEXT_FIXTURES, name)
        os.makedirs(directory, exist_ok=True)
        tok.save(os.path.join(directory, "tokenizer.json"))
        write_json(os.path.join(directory, "cases.json"), cases(tok))

    tok = wordpiece_tokenizer(False)
    shutil.rmtree(MODEL_FIXTURE, ignore_errors=True)
    staging = MODEL_FIXTURE + "-hf"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    build_model(tok).save_pretrained(staging, safe_serialization=True)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                            pad_token="[PAD]", mask_token="[MASK]").save_pretrained(staging)
    transformer = Transformer(staging, max_seq_length=24)
    st = SentenceTransformer(modules=[transformer, Pooling(32, pooling_mode="mean"), Normalize()], device="cpu")
    st.save(MODEL_FIXTURE)
    shutil.rmtree(staging)

    expected = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                             "sentence_transformers": sentence_transformers.__version__},
                "max_seq_length": 24, "sentences": SENTENCES, "pooling": {}}
    loaded = SentenceTransformer(MODEL_FIXTURE, device="cpu")
    expected["pooling"]["mean_normalized"] = loaded.encode(SENTENCES, batch_size=4, convert_to_numpy=True).tolist()
    expected["token_ids"] = [loaded.tokenize([s])["input_ids"][0].tolist() for s in SENTENCES]
    for mode in ("cls", "max", "mean_sqrt_len_tokens"):
        pooled = SentenceTransformer(modules=[loaded[0], Pooling(32, pooling_mode=mode)], device="cpu")
        expected["pooling"][mode] = pooled.encode(SENTENCES, batch_size=4, convert_to_numpy=True).tolist()
    write_json(os.path.join(MODEL_FIXTURE, "expected.json"), expected)


if __name__ == "__main__":
    main()
