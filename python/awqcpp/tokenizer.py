"""AutoTokenizer-like access to awq.cpp's own tokenizer (GGUF metadata or tokenizer.json).

awq.cpp tokenizes by itself, so AutoAWQ scripts need no transformers tokenizer; this shim covers
the calls such scripts make on one: __call__, encode, decode, apply_chat_template, the special
token ids and save_pretrained.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _awqcpp
from ._arrays import as_id_list, wrap_ids


class AwqTokenizer:
    """A model's tokenizer as awq.cpp runs it (awqcpp.Tokenizer underneath, in `.native`)."""

    def __init__(self, native: "_awqcpp.Tokenizer", name_or_path: str = ""):
        self.native = native
        self.name_or_path = name_or_path

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], *args, **kwargs):
        """From a .gguf file or a Hugging Face folder; other arguments are accepted and ignored."""
        path = os.fspath(pretrained_model_name_or_path)
        return cls(_awqcpp.Tokenizer.load(path), path)

    # The calls transformers' tokenizers answer.
    def encode(self, text: str, add_special_tokens: bool = True, **kwargs) -> List[int]:
        return self.native.encode(text, add_special_tokens, False)

    def __call__(self, text: Union[str, Sequence[str]], add_special_tokens: bool = True,
                 return_tensors: Optional[str] = None, **kwargs) -> Dict[str, Any]:
        if isinstance(text, str):
            ids = self.encode(text, add_special_tokens)
            if return_tensors is None:
                return {"input_ids": ids, "attention_mask": [1] * len(ids)}
            rows = [ids]
        else:
            rows = [self.encode(t, add_special_tokens) for t in text]
            if return_tensors is None:
                return {"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]}
        if len({len(r) for r in rows}) > 1:
            raise ValueError("return_tensors needs texts of one length in tokens (no padding here)")
        return {"input_ids": wrap_ids(rows, return_tensors),
                "attention_mask": wrap_ids([[1] * len(r) for r in rows], return_tensors)}

    def decode(self, token_ids: Any, skip_special_tokens: bool = False, **kwargs) -> str:
        return self.native.decode(as_id_list(token_ids), skip_special_tokens)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False, **kwargs) -> List[str]:
        return [self.decode(s, skip_special_tokens) for s in sequences]

    def apply_chat_template(self, conversation: Sequence[Dict[str, str]], tokenize: bool = True,
                            add_generation_prompt: bool = False, return_tensors: Optional[str] = None,
                            **kwargs) -> Any:
        """Renders [{"role": ..., "content": ...}, ...] with the model's template (the template
        families awq.cpp recognises: ChatML, Llama 3, Gemma); token ids unless tokenize=False."""
        text = self.native.apply_chat_template(
            [(m["role"], m["content"]) for m in conversation], add_generation_prompt)
        if not tokenize:
            return text
        # The template holds any BOS it wants; its special tokens are parsed as such.
        ids = self.native.encode(text, False, True)
        return ids if return_tensors is None else wrap_ids([ids], return_tensors)

    def save_pretrained(self, save_directory: Union[str, os.PathLike], **kwargs) -> None:
        """Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json (what
        save_quantized already writes next to the weights)."""
        d = os.fspath(save_directory)
        os.makedirs(d, exist_ok=True)
        self.native.save(d)

    @property
    def bos_token_id(self) -> Optional[int]:
        return None if self.native.bos_id < 0 else self.native.bos_id

    @property
    def eos_token_id(self) -> Optional[int]:
        return None if self.native.eos_id < 0 else self.native.eos_id

    @property
    def pad_token_id(self) -> Optional[int]:
        return None if self.native.pad_id < 0 else self.native.pad_id

    @property
    def vocab_size(self) -> int:
        return self.native.vocab_size

    @property
    def chat_template(self) -> str:
        return self.native.chat_template

    def __len__(self) -> int:
        return self.native.vocab_size

    def __repr__(self) -> str:
        return f"AwqTokenizer({self.name_or_path!r}, vocab_size={self.vocab_size})"


class AutoTokenizer:
    """`AutoTokenizer.from_pretrained(path)` as in transformers, for .gguf files and HF folders."""

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path: Union[str, os.PathLike], *args, **kwargs) -> AwqTokenizer:
        return AwqTokenizer.from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
