"""The local tokenizer's rendering rules and refusals, on small tokenizer files (no engine).

Exactness against a real vLLM is service/tests/e2e/test_local_tokenizer_real.py; here: what is
rendered, what transformers' environment offers the template, and every request shape that must be
left to the engine's /tokenize (None).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from inferstack.kvcache.local_tokenizer import LocalTokenizer

from .tokenizer_files import reference_ids, write

TURNS = [
    {"role": "system", "content": "river stone "},
    {"role": "user", "content": " hi there"},
    {"role": "assistant", "content": "winter"},
    {"role": "user", "content": "next"},
]


@pytest.fixture
def tok(tmp_path: Path) -> LocalTokenizer:
    return LocalTokenizer.load(write(tmp_path / "m"))


def test_chat_renders_with_the_template_and_tokenizes_without_special_tokens(tok: LocalTokenizer) -> None:
    assert tok.text({"messages": TURNS}, "chat") == (
        "<s><|s|>river stone<|end|><|u|>hi there<|end|><|a|>winter<|end|><|u|>next<|end|><|a|>",
        False,
    )
    ids = tok.token_ids({"messages": TURNS}, "chat")
    assert ids is not None and ids.count(0) == 1  # the template's BOS only: no second one added
    without = tok.text({"messages": TURNS, "add_generation_prompt": False}, "chat")
    assert without is not None and without[0].endswith("next<|end|>")
    assert tok.text({"messages": TURNS, "add_special_tokens": True}, "chat") == (
        "<s><|s|>river stone<|end|><|u|>hi there<|end|><|a|>winter<|end|><|u|>next<|end|><|a|>",
        True,
    )


def test_continue_final_message_leaves_the_last_message_open(tok: LocalTokenizer) -> None:
    payload = {
        "messages": [*TURNS, {"role": "assistant", "content": "The first word is "}],
        "add_generation_prompt": False,
        "continue_final_message": True,
    }
    rendered = tok.text(payload, "chat")
    assert rendered is not None and rendered[0].endswith("<|u|>next<|end|><|a|>The first word is")


def test_continue_final_message_with_a_template_that_keeps_spacing(tmp_path: Path) -> None:
    template = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    tok = LocalTokenizer.load(write(tmp_path / "m", template=template))
    payload = {"messages": [{"role": "assistant", "content": "The first "}], "add_generation_prompt": False}
    assert tok.text({**payload, "continue_final_message": True}, "chat") == ("[The first ", False)


def test_text_parts_join_with_newlines_and_none_content_is_empty(tok: LocalTokenizer) -> None:
    payload = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}, "there", {"type": "text", "text": "next"}]},
            {"role": "assistant", "content": None},
        ]
    }
    assert tok.text(payload, "chat") == ("<s><|u|>hi\nthere\nnext<|end|><|a|><|end|><|a|>", False)


def test_completions_add_special_tokens_unless_told_not_to(tmp_path: Path, tok: LocalTokenizer) -> None:
    directory = tmp_path / "m"
    assert tok.token_ids({"prompt": "river stone"}, "completions") == reference_ids(directory, "river stone")
    assert tok.token_ids({"prompt": ["river stone"], "add_special_tokens": False}, "completions") == reference_ids(
        directory, "river stone", add_special_tokens=False
    )


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("chat", {"messages": TURNS, "tools": [{"type": "function", "function": {"name": "f"}}]}),
        ("chat", {"messages": TURNS, "documents": [{"title": "a", "text": "b"}]}),
        ("chat", {"messages": TURNS, "chat_template": "{{ messages }}"}),
        ("chat", {"messages": TURNS, "reasoning_effort": "low"}),
        ("chat", {"messages": TURNS, "truncate_prompt_tokens": 10}),
        ("chat", {"messages": TURNS, "chat_template_kwargs": {"max_length": 4}}),
        ("chat", {"messages": TURNS, "chat_template_kwargs": {"tokenize": True}}),
        ("chat", {"messages": TURNS, "chat_template_kwargs": "no"}),
        ("chat", {"messages": TURNS, "add_generation_prompt": True, "continue_final_message": True}),
        ("chat", {"messages": TURNS, "add_generation_prompt": "yes"}),
        ("chat", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
        ("chat", {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {}}]}]}),
        ("chat", {"messages": [{"role": "developer", "content": "hi"}]}),
        ("chat", {"messages": [{"role": "tool", "content": "hi", "tool_call_id": "1"}]}),
        ("chat", {"messages": [{"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}]}),
        ("chat", {"messages": [{"role": "assistant", "content": "hi", "reasoning": "so"}]}),
        ("chat", {"messages": [{"role": "user", "content": "hi", "name": 3}]}),
        ("chat", {"messages": [{"role": "system", "content": "x-anthropic-billing-header: cch=1\nhi"}]}),
        ("chat", {"messages": []}),
        ("chat", {"messages": "hi"}),
        ("completions", {"prompt": "hi", "suffix": "there"}),
        ("completions", {"prompt": "hi", "truncate_prompt_tokens": 1}),
        ("completions", {"prompt": ["hi", "there"]}),
        ("completions", {"prompt": "hi", "add_special_tokens": "no"}),
        ("embeddings", {"input": "hi"}),
    ],
)
def test_what_is_not_rendered_exactly_goes_to_the_engine(tok: LocalTokenizer, kind: str, payload: Any) -> None:
    assert tok.token_ids(payload, kind) is None


def test_template_kwargs_reach_the_template_only_when_it_reads_them(tmp_path: Path) -> None:
    template = (
        "{{ bos_token }}{% if enable_thinking %}<|s|>{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}"
    )
    tok = LocalTokenizer.load(write(tmp_path / "m", template=template))
    hi = {"messages": [{"role": "user", "content": "hi"}]}
    assert tok.text({**hi, "chat_template_kwargs": {"enable_thinking": True}}, "chat") == ("<s><|s|>hi", False)
    assert tok.text({**hi, "chat_template_kwargs": {"enable_thinking": None}}, "chat") == ("<s>hi", False)
    assert tok.text({**hi, "chat_template_kwargs": {"unread": 1, "add_generation_prompt": True}}, "chat") == (
        "<s>hi",
        False,
    )


def test_transformers_template_environment(tmp_path: Path) -> None:
    template = (
        "{{ bos_token }}{{ messages | tojson }}{{ eos_token }}{{ unk_token }}"
        "{% if messages | length > 1 %}{{ raise_exception('one message only') }}{% endif %}"
        "{% generation %}{{ strftime_now('%Y') | length }}{% endgeneration %}"
        "{% for m in messages %}{% if loop.index > 0 %}{% break %}{% endif %}{% endfor %}"
    )
    tok = LocalTokenizer.load(write(tmp_path / "m", template=template))
    rendered = tok.text({"messages": [{"role": "user", "content": "<é>"}]}, "chat")
    # tojson is transformers' (no HTML escaping, non-ASCII kept); special tokens are variables.
    assert rendered == ('<s>[{"role": "user", "content": "<é>"}]<|end|><unk>4', False)
    assert tok.text({"messages": TURNS}, "chat") is None  # raise_exception: the engine answers 400 too


def test_a_template_that_may_read_content_parts_sends_chats_to_the_engine(tmp_path: Path) -> None:
    template = "{% for m in messages %}{% for part in m['content'] %}{{ part.text }}{% endfor %}{% endfor %}"
    tok = LocalTokenizer.load(write(tmp_path / "m", template=template))
    assert tok.chat_refusal
    assert tok.token_ids({"messages": TURNS}, "chat") is None
    assert tok.token_ids({"prompt": "hi"}, "completions") is not None
    macro = "{% macro show(c) %}{% for p in c %}{{ p }}{% endfor %}{% endmacro %}{{ show(messages[0].content) }}"
    assert LocalTokenizer.load(write(tmp_path / "n", template=macro)).chat_refusal
    assert LocalTokenizer.load(write(tmp_path / "o", template=None)).token_ids({"messages": TURNS}, "chat") is None
    broken = LocalTokenizer.load(write(tmp_path / "p", template="{% for m in messages %}"))
    assert "does not compile" in broken.chat_refusal and broken.token_ids({"messages": TURNS}, "chat") is None


def test_chat_template_jinja_file_wins_and_named_templates_use_default(tmp_path: Path) -> None:
    directory = write(tmp_path / "m", template=[{"name": "default", "template": "A{{ messages[0].content }}"}])
    assert LocalTokenizer.load(directory).text({"messages": TURNS[:1]}, "chat") == ("Ariver stone ", False)
    (directory / "chat_template.jinja").write_text("B{{ messages[0].content }}")
    assert LocalTokenizer.load(directory).text({"messages": TURNS[:1]}, "chat") == ("Briver stone ", False)


def test_an_explicit_add_bos_token_rebuilds_the_post_processor_as_transformers_does(tmp_path: Path) -> None:
    tok = LocalTokenizer.load(write(tmp_path / "m", add_bos_token=False, add_eos_token=True))
    assert tok.token_ids({"prompt": "river"}, "completions") == reference_ids(tmp_path / "m", "river <|end|>", False)


@pytest.mark.parametrize(
    ("extra_file", "config", "why"),
    [
        ("processor_config.json", {}, "processor_config.json"),
        ("chat_template.json", {}, "chat_template.json"),
        (None, {"pad_token": "<pad>"}, "special token '<pad>'"),
        (None, {"image_token": "<image>"}, "special token '<image>'"),
        (None, {"added_tokens_decoder": {"3": {"content": "<s>"}}}, "added token 3"),
    ],
)
def test_files_not_tokenized_here_as_transformers_would_are_refused_at_load(
    tmp_path: Path, extra_file: str | None, config: dict[str, Any], why: str
) -> None:
    directory = write(tmp_path / "m", **config)
    if extra_file:
        (directory / extra_file).write_text(json.dumps({"chat_template": "x"}))
    with pytest.raises(ValueError, match=re.escape(why)):
        LocalTokenizer.load(directory)
    with pytest.raises(ValueError, match=r"tokenizer_config\.json"):
        LocalTokenizer.load(tmp_path / "absent")
