"""Shared by the contract tests: a byte-level tokenizer, so llguidance's matcher runs exactly as in
decoding without a model (token i is byte i, token 256 is EOS), and a tool used by several tests."""

from __future__ import annotations

from llguidance import LLMatcher, LLTokenizer, TokenizerWrapper

from modelladder.contracts.base import Contract


class ByteVocab:
    """The minimal tokenizer llguidance needs: token i is byte i, token 256 is EOS."""

    eos_token_id = 256
    bos_token_id = None
    tokens = [bytes([i]) for i in range(256)] + [b"<|eos|>"]
    special_token_ids = [256]

    def __call__(self, s: str | bytes) -> list[int]:
        return list(s.encode() if isinstance(s, str) else s)


TOK = LLTokenizer(TokenizerWrapper(ByteVocab()))


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city"],
        },
    },
}


def decodes(contract: Contract, text: str) -> bool:
    """Would constrained decoding let the model produce exactly ``text`` and then stop?"""
    m = LLMatcher(TOK, contract.grammar(), log_level=0)
    assert not m.is_error(), m.get_error()
    if not m.consume_tokens(TOK.tokenize_str(text)):
        return False
    return m.is_accepting() and m.consume_token(TOK.eos_token)
