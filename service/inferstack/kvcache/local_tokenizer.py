"""A request's prompt token ids computed in the gateway from the model's own tokenizer files, as vLLM does.

    tok = LocalTokenizer.load(Path("/models/llama"))     # tokenizer.json + tokenizer_config.json
    tok.token_ids(payload, "chat")                       # list[int], or None: not rendered here

What vLLM 0.32 does, and what is done here (``vllm/renderers/hf.py``, ``chat_utils.py``,
``entrypoints/serve/tokenize``; transformers 5's ``apply_chat_template``):

- chat: the messages become a "conversation" (a string content, or the text parts joined with
  ``"\\n"``), rendered with the model's chat template in transformers' Jinja environment (sandboxed,
  ``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``, ``raise_exception``, ``strftime_now``, its own
  ``tojson``) with the named special tokens (``bos_token``, ...), ``add_generation_prompt`` (default
  true), ``continue_final_message`` and the ``chat_template_kwargs`` the template reads; then
  tokenized with ``add_special_tokens`` false unless the request says otherwise;
- completions: the prompt string tokenized with ``add_special_tokens`` (default true);
- the tokenizer is ``tokenizer.json`` as transformers' fast tokenizer loads it: ``split_special_tokens``
  and an explicit ``add_bos_token`` / ``add_eos_token`` rebuild the post-processor as transformers does.

Anything not rendered exactly the same here answers None (the gateway asks the engine's ``/tokenize``):
tools, documents, a request's own chat template, ``reasoning_effort``, truncation, content parts other
than text, roles other than system/user/assistant, tool calls, templates that iterate over content
parts (vLLM would hand them OpenAI-style parts), processor chat templates. What escapes these rules
(an engine started with ``--chat-template``, a tokenizer class transformers rebuilds in code) is what
the drift guard (``tokenizer_guard.py``) is for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.meta
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer, processors

# apply_chat_template's own parameters: as chat_template_kwargs they change rendering or tokenizing
# (truncation, max_length, ...) rather than reach the template, except the two the request overrides.
_APPLY_PARAMETERS = frozenset(
    {
        "conversation",
        "tools",
        "documents",
        "chat_template",
        "tokenize",
        "padding",
        "truncation",
        "max_length",
        "return_tensors",
        "return_dict",
        "return_assistant_tokens_mask",
        "tokenizer_kwargs",
    }
)
_OVERRIDDEN = frozenset({"add_generation_prompt", "continue_final_message"})
# Chat request fields that change the engine's input in ways not rendered here: present and not null,
# the request is refused.
_CHAT_REFUSED = ("tools", "documents", "chat_template", "reasoning_effort", "truncate_prompt_tokens",
                 "mm_processor_kwargs", "media_io_kwargs")  # fmt: skip
_COMPLETION_REFUSED = ("prompt_embeds", "truncate_prompt_tokens", "suffix")
_ROLES = frozenset({"system", "user", "assistant"})
# vLLM drops this line from system text (chat_utils._strip_claude_code_billing_header).
_BILLING_HEADER = "x-anthropic-billing-header"
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


class _GenerationTag(jinja2.ext.Extension):
    """transformers' ``{% generation %}`` block: renders its body (the mask it tracks is not needed)."""

    tags = {"generation"}  # noqa: RUF012 (jinja's own class attribute)

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return str(caller())


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    # transformers' own filter: Jinja's escapes HTML characters.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def compile_template(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


def iterates_content(ast: jinja2.nodes.Template) -> bool:
    """Could vLLM take this template for one that reads OpenAI content parts ("openai" format)?

    vLLM looks for loops over a message's ``content`` (directly, through an assignment or a macro
    parameter) and then hands the template lists of parts instead of strings. This is a superset of
    its test: any loop whose iterable mentions ``content``, or iterates a macro's parameter.
    """

    def mentions_content(node: jinja2.nodes.Node) -> bool:
        for n in (node, *node.find_all((jinja2.nodes.Name, jinja2.nodes.Getattr, jinja2.nodes.Getitem))):
            if isinstance(n, jinja2.nodes.Name) and n.name == "content":
                return True
            if isinstance(n, jinja2.nodes.Getattr) and n.attr == "content":
                return True
            if (
                isinstance(n, jinja2.nodes.Getitem)
                and isinstance(n.arg, jinja2.nodes.Const)
                and n.arg.value == "content"
            ):
                return True
        return False

    if any(mentions_content(loop.iter) for loop in ast.find_all(jinja2.nodes.For)):
        return True
    for macro in ast.find_all(jinja2.nodes.Macro):
        params = {a.name for a in macro.args}
        for loop in macro.find_all(jinja2.nodes.For):
            names = (loop.iter, *loop.iter.find_all(jinja2.nodes.Name))
            if any(isinstance(n, jinja2.nodes.Name) and n.name in params for n in names):
                return True
    return False


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def special_tokens_of(config: Mapping[str, Any]) -> dict[str, str]:
    """transformers 5's special_tokens_map, which the template sees as variables: the named tokens, and
    the model-specific ones (any other ``*_token`` string, ``model_specific_special_tokens``, and
    ``extra_special_tokens`` given by name)."""
    tokens: dict[str, str] = {}
    for key, value in config.items():
        if key.endswith("_token") and (text := _token_text(value)) is not None:
            tokens[key] = text
    for group in ("extra_special_tokens", "additional_special_tokens", "model_specific_special_tokens"):
        named = config.get(group)
        if isinstance(named, dict):
            tokens.update({str(k): t for k, v in named.items() if (t := _token_text(v)) is not None})
    return tokens


class LocalTokenizer:
    def __init__(self, tokenizer: Tokenizer, config: Mapping[str, Any], template: str | None) -> None:
        """Raises ValueError when these files are not tokenized here exactly as transformers would."""
        self.tokenizer = tokenizer
        self.special_tokens = special_tokens_of(config)
        expected = [*self.special_tokens.values()]
        decoder = config.get("added_tokens_decoder")
        if isinstance(decoder, dict):
            for index, entry in decoder.items():
                text = _token_text(entry)
                if text is None or tokenizer.token_to_id(text) != int(index):
                    raise ValueError(f"added token {index} ({text!r}) is not in tokenizer.json as that id")
        extra = config.get("extra_special_tokens", config.get("additional_special_tokens"))
        if isinstance(extra, list):
            expected += [t for t in map(_token_text, extra) if t is not None]
        for text in expected:
            if tokenizer.token_to_id(text) is None:
                # transformers would add it as a new token: ids this file does not have.
                raise ValueError(f"special token {text!r} is not in tokenizer.json")
        if config.get("split_special_tokens"):
            tokenizer.encode_special_tokens = True
        if "add_bos_token" in config or "add_eos_token" in config or tokenizer.post_processor is None:
            self._rebuild_post_processor(bool(config.get("add_bos_token")), bool(config.get("add_eos_token")))
        self.template: jinja2.Template | None = None
        self.template_variables: frozenset[str] = frozenset()
        self.chat_refusal = "the model has no chat template"
        self.template_source = template or ""
        if template is not None:
            try:
                compiled = compile_template(template)
            except jinja2.TemplateError as exc:
                self.chat_refusal = f"the chat template does not compile: {exc}"  # the engine's 400s, not ours
                return
            ast = compiled.environment.parse(template)
            self.template_variables = frozenset(jinja2.meta.find_undeclared_variables(ast))
            if iterates_content(ast):
                self.chat_refusal = "the chat template may read content parts"
            else:
                self.template, self.chat_refusal = compiled, ""

    def _rebuild_post_processor(self, bos: bool, eos: bool) -> None:
        # TokenizersBackend.update_post_processor: BOS and EOS around each sequence, as configured.
        b, e = self.special_tokens.get("bos_token"), self.special_tokens.get("eos_token")
        bos, eos = bos and b is not None, eos and e is not None
        single = f"{f'{b}:0 ' if bos else ''}$A:0{f' {e}:0' if eos else ''}"
        pair = f"{single}{f' {b}:1' if bos else ''} $B:1{f' {e}:1' if eos else ''}"
        special = [(t, self.tokenizer.token_to_id(t)) for t, on in ((b, bos), (e, eos)) if on and t is not None]
        self.tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)

    @classmethod
    def load(cls, directory: Path) -> LocalTokenizer:
        """The tokenizer of a model directory; ValueError (naming the reason) when it is not usable here."""
        try:
            config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
            tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises plain Exception on a bad file
            raise ValueError(f"{directory}: {exc}") from exc
        for name in ("chat_template.json", "processor_config.json", "preprocessor_config.json"):
            if (directory / name).exists():
                # vLLM prefers a processor's chat template, which transformers' processors resolve.
                raise ValueError(f"{directory}: {name} (a processor's chat template is not rendered here)")
        jinja_file = directory / "chat_template.jinja"
        template = config.get("chat_template")
        if jinja_file.exists():
            template = jinja_file.read_text(encoding="utf-8")  # transformers prefers the file
        elif isinstance(template, list):
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if template is not None and not isinstance(template, str):
            raise ValueError(f"{directory}: chat_template is neither a string nor named templates")
        return cls(tokenizer, config, template)

    def token_ids(self, payload: Mapping[str, Any], kind: str) -> list[int] | None:
        """The engine's input ids for this request, or None when it is not rendered here exactly."""
        text = self.text(payload, kind)
        return None if text is None else self.encode(*text)

    def text(self, payload: Mapping[str, Any], kind: str) -> tuple[str, bool] | None:
        """What is tokenized and whether special tokens are added (rendering only: the cheap half)."""
        if kind == "chat":
            return self._chat(payload)
        if kind == "completions":
            return self._completion(payload)
        return None

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        # encode_batch releases the GIL while it encodes (encode does not): a long prompt can be
        # tokenized off the event loop without stopping it.
        return list(self.tokenizer.encode_batch([text], add_special_tokens=add_special_tokens)[0].ids)

    def _completion(self, payload: Mapping[str, Any]) -> tuple[str, bool] | None:
        if any(payload.get(k) is not None for k in _COMPLETION_REFUSED):
            return None
        prompt = payload.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]  # a batch of one
        special = payload.get("add_special_tokens", True)
        if not isinstance(prompt, str) or not isinstance(special, bool):
            return None
        return prompt, special

    def _chat(self, payload: Mapping[str, Any]) -> tuple[str, bool] | None:
        if self.template is None or any(payload.get(k) is not None for k in _CHAT_REFUSED):
            return None
        generation = payload.get("add_generation_prompt", True)
        cont = payload.get("continue_final_message", False)
        special = payload.get("add_special_tokens", False)
        if not all(isinstance(v, bool) for v in (generation, cont, special)) or (generation and cont):
            return None
        variables = self._template_kwargs(payload.get("chat_template_kwargs"))
        conversation = conversation_of(payload.get("messages"))
        if variables is None or not conversation:
            return None
        try:
            return self.render(conversation, generation, cont, variables), special
        except (jinja2.TemplateError, ValueError, TypeError, KeyError, IndexError):
            return None  # the engine rejects it too, or renders what this cannot say: ask it

    def _template_kwargs(self, given: Any) -> dict[str, Any] | None:
        """vLLM's resolve_chat_template_kwargs: the ones the template reads, refused when they do more."""
        variables: dict[str, Any] = dict(self.special_tokens)
        if given is None:
            return variables
        if not isinstance(given, dict):
            return None
        for key, value in given.items():
            if key in _APPLY_PARAMETERS:
                return None
            if key in _OVERRIDDEN or value is None or value == "auto":
                continue  # the request's own fields win; vLLM's merge drops None and "auto"
            if key in self.template_variables:
                variables[key] = value
        return variables

    def render(
        self, conversation: list[dict[str, Any]], generation: bool, cont: bool, variables: dict[str, Any]
    ) -> str:
        """transformers' render_jinja_template for one conversation (continue_final_message included)."""
        assert self.template is not None
        final = ""
        if cont:
            if "content" not in self.template_source:
                raise ValueError("continue_final_message: the template has no content field")
            final = conversation[-1]["content"]
            conversation = [*conversation[:-1], {**conversation[-1], "content": final + _CONTINUE_TAG}]
        rendered = self.template.render(
            messages=conversation,
            tools=None,
            documents=None,
            add_generation_prompt=generation,
            **variables,
        )
        if not cont:
            return rendered
        if final.strip() not in rendered or _CONTINUE_TAG.strip() not in rendered:
            raise ValueError("continue_final_message: the final message is not in the rendered chat")
        at = rendered.rindex(_CONTINUE_TAG.strip())
        if rendered[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
            return rendered[:at]
        return rendered[:at].rstrip()


def conversation_of(messages: Any) -> list[dict[str, Any]] | None:
    """vLLM's parse_chat_messages for text-only system/user/assistant messages (string content format)."""
    if not isinstance(messages, Sequence) or isinstance(messages, str):
        return None
    out: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            return None
        role = message.get("role")
        if role not in _ROLES or any(v is not None for k, v in message.items() if k not in ("role", "content", "name")):
            return None
        content = message.get("content")
        if content is None:
            parts: list[Any] = []
        elif isinstance(content, str):
            parts = [content]
        elif isinstance(content, list):
            parts = content
        else:
            return None
        texts: list[str] = []
        for part in parts:
            if isinstance(part, dict) and part.get("type") == "text" and set(part) <= {"type", "text"}:
                part = part.get("text")
            if not isinstance(part, str):
                return None  # images, audio, refusals, ...: not rendered here
            if role == "system" and part.startswith(_BILLING_HEADER):
                return None
            texts.append(part)
        entry: dict[str, Any] = {"role": role, "content": "\n".join(texts)}
        name = message.get("name")
        if name is not None:
            if not isinstance(name, str):
                return None
            entry["name"] = name
        out.append(entry)
    return out
