"""A Hugging Face checkpoint directory on disk: its config, tokenizer files and safetensors shards,
checked without loading a framework (the hf converter and the gguf target both read it)."""

from __future__ import annotations

import json
from pathlib import Path

from forgeml.formats import jsontext
from forgeml.errors import InputError
from forgeml.formats.safetensors import read_header

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def is_checkpoint_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def read_config(path: Path) -> dict:
    cfg_path = path / "config.json"
    try:
        cfg = jsontext.loads(cfg_path.read_bytes())
    except (RecursionError, jsontext.TooDeep):
        raise InputError(f"{cfg_path}: not a readable JSON config (nested too deeply)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{cfg_path}: not a readable JSON config ({str(e)[:200]})") from e
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise InputError(f"{cfg_path}: has no 'model_type'; is this a Hugging Face checkpoint directory?")
    return cfg


def safetensors_files(path: Path) -> list[Path]:
    """The checkpoint's safetensors files (sharded via model.safetensors.index.json or single)."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = jsontext.loads(index.read_bytes())["weight_map"]
            names = sorted(set(weight_map.values()))
            if not all(isinstance(f, str) and f for f in names):
                raise TypeError("a shard name is not a string")
        except (RecursionError, jsontext.TooDeep):
            raise InputError(f"{index}: not a readable safetensors index (JSON nested too deeply)") from None
        except (OSError, KeyError, TypeError, AttributeError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{index}: not a readable safetensors index ({str(e)[:200]})") from e
        files = [path / f for f in names]
        outside = [f for f in names if Path(f).is_absolute() or ".." in Path(f).parts]
        if outside:
            raise InputError(f"{index}: shard {outside[0]!r} is outside the checkpoint directory; refused")
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise InputError(f"{path}: the safetensors index names shards that are missing: {missing}")
        return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
        if pickled:
            raise InputError(f"{path}: weights are only in pickle files ({', '.join(pickled)}); forgeml reads "
                             "safetensors checkpoints. Re-save with save_pretrained(..., safe_serialization=True) "
                             "from a process you trust")
        raise InputError(f"{path}: no *.safetensors weights in the checkpoint directory")
    return files


def check_checkpoint(path: Path) -> dict:
    """Everything that can be checked without loading weights; returns config.json's contents."""
    cfg = read_config(path)
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise InputError(f"{path}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILES)}); save the "
                         "tokenizer beside the model with tokenizer.save_pretrained(dir)")
    for f in safetensors_files(path):
        read_header(f)  # raises InputError on a corrupt or truncated header
    return cfg


def local_tokenizer_dir(model) -> Path | None:
    """Where an in-memory model's tokenizer files are: its ``name_or_path``, when that is a local dir."""
    name = getattr(model, "name_or_path", "") or getattr(getattr(model, "config", None), "_name_or_path", "")
    if name:
        p = Path(name)
        if p.is_dir() and any((p / f).is_file() for f in TOKENIZER_FILES):
            return p
    return None
