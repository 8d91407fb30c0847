"""The tokenizer as GGUF metadata: vocabulary, scores or merges, token types, special ids, chat template.

Two kinds are read:
- SentencePiece (``tokenizer.model``, llama/mistral style) -> ``tokenizer.ggml.model = "llama"``.
- Byte-level BPE (``tokenizer.json``, gpt2/qwen2/llama-3 style) -> ``"gpt2"`` plus a pre-tokenizer name.

llama.cpp splits text with a hard-coded regex chosen by ``tokenizer.ggml.pre``; a wrong or unknown
name makes it tokenize differently from the source without any error. So the pre-tokenizer is
identified from what ``tokenizer.json`` actually says (its split regex and byte-level settings) and
matched against the ones whose llama.cpp name is known; anything else is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from forgeml.errors import TargetError

GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
               r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")

# What a tokenizer.json pre-tokenizer reduces to -> the name llama.cpp gives that splitting rule.
KNOWN_PRE = {
    ("bytelevel", GPT2_REGEX): "gpt-2",
    ("split+bytelevel", LLAMA3_REGEX): "llama-bpe",
    ("split+bytelevel", QWEN2_REGEX): "qwen2",
}
_ALLOWED_NORMALIZERS = {"gpt-2": (None,), "llama-bpe": (None,), "qwen2": (None, "NFC")}
# llama.cpp looks whole words up in the vocabulary before merging for llama-bpe only (Llama 3's
# tokenizer.json says "ignore_merges": true); a tokenizer that differs here splits some words differently.
_IGNORE_MERGES = {"gpt-2": False, "llama-bpe": True, "qwen2": False}

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class Vocab:
    model: str  # "llama" (SentencePiece) | "gpt2" (byte-level BPE)
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] | None = None
    pre: str | None = None
    special: dict[str, int] = field(default_factory=dict)  # bos/eos/unk/pad -> id
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None
    chat_template: str | None = None
    padded: int = 0  # placeholder tokens added to reach the model's vocab_size

    def summary(self) -> dict:
        return {"model": self.model, "pre": self.pre, "tokens": len(self.tokens), "merges": len(self.merges or []),
                "special": self.special, "add_bos": self.add_bos, "add_eos": self.add_eos,
                "chat_template": self.chat_template is not None, "padded": self.padded}


def read_vocab(tok_dir: Path | None, cfg: dict, vocab_size: int) -> Vocab:
    if tok_dir is None:
        raise TargetError("gguf: the model has no tokenizer files to write; give a checkpoint directory with its "
                          "tokenizer (tokenizer.save_pretrained(dir) beside model.save_pretrained(dir))")
    tcfg = _json(tok_dir / "tokenizer_config.json") or {}
    tjson = _json(tok_dir / "tokenizer.json")
    if (tok_dir / "tokenizer.model").is_file() and _is_sentencepiece_like(tjson):
        v = _sentencepiece(tok_dir / "tokenizer.model", tjson)
    elif tjson is not None:
        v = _bpe(tok_dir / "tokenizer.json", tjson)
    elif (tok_dir / "vocab.json").is_file():
        raise TargetError(f"gguf: {tok_dir} has vocab.json/merges.txt but no tokenizer.json, which says how text is "
                          "split before BPE; re-save the tokenizer with a current transformers to write one")
    else:
        raise TargetError(f"gguf: {tok_dir} has no tokenizer.json or tokenizer.model")
    _specials(v, tcfg, tjson, cfg)
    v.chat_template = _chat_template(tok_dir, tcfg)
    if len(v.tokens) > vocab_size:
        raise TargetError(f"gguf: the tokenizer has {len(v.tokens)} tokens but the model's embedding has only "
                          f"{vocab_size} rows")
    while len(v.tokens) < vocab_size:  # llama.cpp needs one token per embedding row
        v.tokens.append(f"[PAD{len(v.tokens)}]")
        v.types.append(UNUSED)
        if v.scores is not None:
            v.scores.append(-1e4)
        v.padded += 1
    return v


def _json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TargetError(f"gguf: {path} is not readable JSON ({e})") from e


def _is_sentencepiece_like(tjson) -> bool:
    """tokenizer.model decides unless tokenizer.json is a byte-level BPE (then the .model is a leftover)."""
    return tjson is None or not _has_bytelevel(tjson)


def _has_bytelevel(tjson: dict) -> bool:
    return "ByteLevel" in json.dumps(tjson.get("pre_tokenizer")) or "ByteLevel" in json.dumps(tjson.get("decoder"))


# --- SentencePiece ---------------------------------------------------------------------------------

def _sentencepiece(path: Path, tjson) -> Vocab:
    from forgeml.errors import require

    require("sentencepiece", "gguf")
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as e:  # protobuf's DecodeError
        raise TargetError(f"gguf: {path} is not a SentencePiece model ({e})") from e
    if not proto.pieces:
        raise TargetError(f"gguf: {path} holds no pieces (corrupt SentencePiece model?)")
    tokens = [p.piece for p in proto.pieces]
    scores = [float(p.score) for p in proto.pieces]
    types = [int(p.type) if 1 <= int(p.type) <= 6 else NORMAL for p in proto.pieces]
    v = Vocab("llama", tokens, types, scores=scores,
              add_space_prefix=bool(proto.normalizer_spec.add_dummy_prefix))
    for added in (tjson or {}).get("added_tokens", []):  # tokens added on top of the .model
        i = int(added["id"])
        if i < len(tokens):
            continue
        while len(v.tokens) < i:
            v.tokens.append(f"[PAD{len(v.tokens)}]")
            v.types.append(UNUSED)
            v.scores.append(-1e4)
        v.tokens.append(added["content"])
        v.types.append(CONTROL if added.get("special") else USER_DEFINED)
        v.scores.append(-1e3)
    return v


# --- byte-level BPE --------------------------------------------------------------------------------

def describe_pre(tjson: dict) -> tuple[tuple, str]:
    """(canonical key, human description) of a tokenizer.json's pre-tokenizer."""
    pt = tjson.get("pre_tokenizer") or {}
    subs = pt.get("pretokenizers", []) if pt.get("type") == "Sequence" else [pt]
    kinds = [s.get("type") for s in subs]
    desc = " + ".join(str(k) for k in kinds) or "none"
    if kinds == ["ByteLevel"]:
        s = subs[0]
        if s.get("use_regex", True) and not s.get("add_prefix_space", False):
            return ("bytelevel", GPT2_REGEX), "ByteLevel with gpt2's built-in regex"
        return ("bytelevel", None, bool(s.get("add_prefix_space")), bool(s.get("use_regex", True))), \
            f"ByteLevel(add_prefix_space={s.get('add_prefix_space')}, use_regex={s.get('use_regex', True)})"
    if kinds == ["Split", "ByteLevel"]:
        split, bl = subs
        regex = (split.get("pattern") or {}).get("Regex")
        if (regex and split.get("behavior") == "Isolated" and not split.get("invert", False)
                and not bl.get("use_regex", True) and not bl.get("add_prefix_space", False)):
            return ("split+bytelevel", regex), f"Split(regex {regex!r}) + ByteLevel"
        desc = f"Split({split.get('pattern')}, {split.get('behavior')}) + ByteLevel(use_regex={bl.get('use_regex')})"
    return ("other", desc), desc


def detect_pre(tjson: dict, where: str) -> str:
    key, desc = describe_pre(tjson)
    name = KNOWN_PRE.get(key)
    if name is None:
        known = ", ".join(sorted(set(KNOWN_PRE.values())))
        raise TargetError(f"gguf: {where}: unknown BPE pre-tokenizer ({desc}); llama.cpp would split text "
                          f"differently from the source tokenizer, so no file is written. Known: {known}")
    ignore = bool((tjson.get("model") or {}).get("ignore_merges", False))
    if ignore != _IGNORE_MERGES[name]:
        raise TargetError(f"gguf: {where}: a {name} pre-tokenizer with ignore_merges={ignore} tokenizes some words "
                          f"differently from llama.cpp's {name!r} (which uses ignore_merges={_IGNORE_MERGES[name]}); "
                          "no file is written")
    norm = (tjson.get("normalizer") or {}).get("type")
    if norm not in _ALLOWED_NORMALIZERS[name]:
        raise TargetError(f"gguf: {where}: the {name} pre-tokenizer with a {norm} normalizer is not what llama.cpp "
                          f"implements for {name!r}; no file is written")
    return name


def _bpe(path: Path, tjson: dict) -> Vocab:
    model = tjson.get("model") or {}
    if model.get("type") != "BPE":
        raise TargetError(f"gguf: {path}: tokenizer model {model.get('type')!r} is not supported; forgeml writes "
                          "SentencePiece (tokenizer.model) and byte-level BPE tokenizers")
    if not _has_bytelevel(tjson):
        raise TargetError(f"gguf: {path}: a BPE tokenizer without byte-level pre-tokenization (SentencePiece-style "
                          "tokenizer.json); include the original tokenizer.model beside it")
    pre = detect_pre(tjson, path.name)
    vocab: dict[str, int] = model.get("vocab") or {}
    added = tjson.get("added_tokens", [])
    size = max([*vocab.values(), *(int(a["id"]) for a in added)], default=-1) + 1
    tokens: list[str | None] = [None] * size
    types = [NORMAL] * size
    for tok, i in vocab.items():
        tokens[i] = tok
    for a in added:
        i = int(a["id"])
        tokens[i] = a["content"]
        types[i] = CONTROL if a.get("special") else USER_DEFINED
    for i, t in enumerate(tokens):
        if t is None:
            tokens[i] = f"[PAD{i}]"
            types[i] = UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return Vocab("gpt2", tokens, types, merges=merges, pre=pre)


# --- special tokens and template -------------------------------------------------------------------

def _content(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _specials(v: Vocab, tcfg: dict, tjson, cfg: dict) -> None:
    index = {}
    for i, t in enumerate(v.tokens):
        index.setdefault(t, i)
    for role in ("bos", "eos", "unk", "pad"):
        text = _content(tcfg.get(f"{role}_token"))
        i = index.get(text) if text else None
        if i is None and isinstance(cfg.get(f"{role}_token_id"), int):
            i = cfg[f"{role}_token_id"]
        if i is not None and 0 <= i < len(v.tokens):
            v.special[role] = int(i)
    if v.model == "llama":
        v.special.setdefault("unk", next((i for i, t in enumerate(v.types) if t == UNKNOWN), 0))
    post = ((tjson or {}).get("post_processor") or {})
    single = post.get("single") if post.get("type") == "TemplateProcessing" else None
    if "add_bos_token" in tcfg:
        v.add_bos = bool(tcfg["add_bos_token"])
    elif single:
        v.add_bos = "SpecialToken" in single[0]
    else:
        v.add_bos = v.model == "llama"
    if "add_eos_token" in tcfg:
        v.add_eos = bool(tcfg["add_eos_token"])
    elif single:
        v.add_eos = len(single) > 1 and "SpecialToken" in single[-1]


def _chat_template(tok_dir: Path, tcfg: dict) -> str | None:
    jinja = tok_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    t = tcfg.get("chat_template")
    if isinstance(t, list):  # named templates: llama.cpp reads the default one
        t = next((x.get("template") for x in t if x.get("name") == "default"), None)
    return t if isinstance(t, str) else None
