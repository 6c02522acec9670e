"""Chat conversations to prompt token ids, as vLLM's `LLM.chat` renders them.

A conversation is a list of {"role": ..., "content": ...} messages. Content is a string,
None, or a list of parts in OpenAI's format ({"type": "text", "text": ...}, or a bare
string); only text parts are accepted. The template sees the content either as one string
(parts joined by newlines: the "string" format) or as the list of {"type": "text"} parts
(the "openai" format); "auto" picks "openai" when the template loops over a message's
content, as vLLM does. The rendered text is tokenized without special tokens, since the
template writes them itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CONTENT_FORMATS = ("auto", "string", "openai")

Conversation = list[dict[str, Any]]


def split_conversations(messages: Any) -> list[Conversation]:
    """One conversation, or a list of them, as a list of conversations.

    Raises TypeError when messages is not a list of message dicts or of such lists.
    """
    if isinstance(messages, (str, bytes, dict)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of message dicts, or a list of such lists; got "
                        f"{type(messages).__name__}")
    items = list(messages)
    if all(isinstance(m, (list, tuple)) for m in items):
        return [list(conv) for conv in items]
    return [items]


def _text_of_part(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        raise TypeError(f"a content part must be a dict or a str, got {type(part).__name__}")
    kind = part.get("type")
    if kind != "text":
        raise ValueError(f"Unsupported chat content part type: {kind!r}; octavo takes only 'text' parts")
    text = part.get("text")
    if not isinstance(text, str):
        raise TypeError(f"a text content part needs a str 'text', got {text!r:.80}")
    return text


def parse_conversation(conversation: Conversation, content_format: str) -> Conversation:
    """The messages as the template sees them, content in `content_format` (not "auto").

    Keys other than content (name, tool_calls, tool_call_id, ...) pass through unchanged.
    Raises TypeError for a message that is not a dict or lacks a str role, ValueError for
    a content part other than text.
    """
    parsed = []
    for message in conversation:
        if not isinstance(message, dict):
            raise TypeError(f"each message must be a dict with 'role' and 'content', got {message!r:.80}")
        role = message.get("role")
        if not isinstance(role, str):
            raise TypeError(f"each message needs a str 'role', got {message!r:.80}")
        content = message.get("content")
        if content is None:
            parts: list[str] = []
        elif isinstance(content, str):
            parts = [content]
        elif isinstance(content, (list, tuple)):
            parts = [_text_of_part(p) for p in content]
        else:
            raise TypeError(f"message content must be a str, a list of parts or None, got "
                            f"{type(content).__name__}")
        out = dict(message)
        if content_format == "openai":
            out["content"] = [{"type": "text", "text": t} for t in parts]
        else:
            out["content"] = "\n".join(parts)
        parsed.append(out)
    return parsed


def resolve_chat_template(tokenizer: Any, chat_template: str | None, tools: Any) -> str:
    """The template to render with: the one given, else the tokenizer's.

    A tokenizer with several named templates gives "tool_use" when tools are passed and
    it has one, else "default". Raises ValueError when there is none.
    """
    if chat_template is not None:
        if not isinstance(chat_template, str):
            raise TypeError(f"chat_template must be a str, got {type(chat_template).__name__}")
        return chat_template
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        if tools is not None and "tool_use" in template:
            template = template["tool_use"]
        else:
            template = template.get("default")
    if not template:
        raise ValueError(
            "the tokenizer has no chat template and none was given: pass chat_template= to "
            "LLM.chat (a Jinja template string), or set tokenizer.chat_template")
    return template


def detect_content_format(chat_template: str) -> str:
    """"openai" when the template loops over a message's content, else "string"."""
    import jinja2
    from jinja2 import nodes

    try:
        ast = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).parse(chat_template)
    except jinja2.TemplateError:
        return "string"  # rendering will report the error; vLLM's default meanwhile

    def accesses(node: Any, var: str, key: str | None = None) -> bool:
        # Looks through filters, tests and slices: message['content'] | list, messages[1:]
        if isinstance(node, (nodes.Filter, nodes.Test)) and node.node is not None:
            return accesses(node.node, var, key)
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Slice):
            return accesses(node.node, var, key)
        if key is None:
            return isinstance(node, nodes.Name) and node.name == var
        if isinstance(node, nodes.Getitem):
            return isinstance(node.arg, nodes.Const) and node.arg.value == key and accesses(node.node, var)
        if isinstance(node, nodes.Getattr):
            return node.attr == key and accesses(node.node, var)
        return False

    message_vars = set()
    for loop in ast.find_all(nodes.For):
        if accesses(loop.iter, "messages") and isinstance(loop.target, nodes.Name):
            message_vars.add(loop.target.name)
    for assign in ast.find_all(nodes.Assign):  # {% set message = messages[0] %}
        value = assign.node
        if (isinstance(assign.target, nodes.Name) and isinstance(value, nodes.Getitem)
                and isinstance(value.arg, nodes.Const) and accesses(value.node, "messages")):
            message_vars.add(assign.target.name)
    for loop in ast.find_all(nodes.For):
        if any(accesses(loop.iter, var, "content") for var in message_vars):
            return "openai"
    return "string"


def resolve_content_format(chat_template: str, content_format: str) -> str:
    if content_format not in CONTENT_FORMATS:
        raise ValueError(f"chat_template_content_format must be one of {list(CONTENT_FORMATS)}, "
                         f"got {content_format!r}")
    return detect_content_format(chat_template) if content_format == "auto" else content_format


def render_prompt_ids(tokenizer: Any, conversation: Conversation, chat_template: str, *,
                      add_generation_prompt: bool, continue_final_message: bool, tools: Any,
                      chat_template_kwargs: dict[str, Any] | None) -> list[int]:
    """Renders one parsed conversation and tokenizes it (no special tokens added).

    Errors from the template (a raise_exception in it, a final message to continue that
    is missing) come back as ValueError, as in vLLM.
    """
    kwargs = dict(chat_template_kwargs or {})
    try:
        text = tokenizer.apply_chat_template(
            conversation, tools=tools, chat_template=chat_template, tokenize=False,
            add_generation_prompt=add_generation_prompt, continue_final_message=continue_final_message,
            **kwargs)
    except ValueError:
        raise
    except Exception as e:  # jinja2.TemplateError and what templates raise
        raise ValueError(f"the chat template failed to render: {type(e).__name__}: {e}") from e
    return list(tokenizer.encode(text, add_special_tokens=False))
