"""A small model's tokenizer files written by the ``tokenizers`` library, for tests that need no engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, pre_tokenizers, processors

WORDS = ["river", "stone", "ledger", "harbour", "winter", "hi", "there", "next", "The", "first", "word", "is"]
SPECIAL = ["<s>", "</s>", "<|u|>", "<|a|>", "<|s|>", "<|end|>", "<unk>"]
# A Llama-3-like template: BOS from the template, a header per role, trimmed content, an end marker.
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'][0] + '|>' + (m['content'] | trim) + '<|end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|a|>' }}{% endif %}"
)


def write(directory: Path, template: str | None = TEMPLATE, swap: tuple[str, str] | None = None, **config: Any) -> Path:
    """Word-level vocabulary (specials first), BOS added by the post-processor like Llama's; ``swap``
    exchanges two words' ids (a tokenizer that drifted)."""
    vocab = {t: i for i, t in enumerate([*SPECIAL, *WORDS])}
    if swap:
        vocab[swap[0]], vocab[swap[1]] = vocab[swap[1]], vocab[swap[0]]
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(SPECIAL)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    spec = {"bos_token": "<s>", "eos_token": "<|end|>", "unk_token": "<unk>", **config}
    if template is not None:
        spec["chat_template"] = template
    (directory / "tokenizer_config.json").write_text(json.dumps(spec))
    return directory


def reference_ids(directory: Path, text: str, add_special_tokens: bool = True) -> list[int]:
    """The ids straight from the ``tokenizers`` library: what a correct engine answers."""
    return list(
        Tokenizer.from_file(str(directory / "tokenizer.json")).encode(text, add_special_tokens=add_special_tokens).ids
    )
