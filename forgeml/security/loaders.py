"""The only module allowed to deserialize pickles (a test walks the package's AST to keep it so).

Each loader runs the scanner first and refuses what it flags (dangerous globals always; unknown ones
unless the caller trusts the file). Then it unpickles through an unpickler whose ``find_class`` checks
every global twice: by the name the pickle gives, and by the name of the object that name resolves
to. The second check catches a code-running callable re-exported under a harmless-looking module
(``somepkg.utils.system`` that is really ``os.system``), which no name list can enumerate.
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path

from forgeml.errors import InputError
from forgeml.security.pickle_scan import DANGEROUS, classify, refuse_unsafe, require_safe_pickle


class RefusedGlobal(pickle.UnpicklingError):
    """A global the guard would not resolve."""


def _guard(find, module: str, name: str):
    if classify(module, name) == DANGEROUS:
        raise RefusedGlobal(f"refused to import {module}.{name}: it can run code")
    obj = find(module, name)
    if isinstance(obj, types.ModuleType):
        raise RefusedGlobal(f"refused to import {module}.{name}: it is a module")
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        real_module = getattr(obj, "__module__", None)
        real_name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        if isinstance(real_module, str) and isinstance(real_name, str) \
                and classify(real_module, real_name) == DANGEROUS:
            raise RefusedGlobal(f"refused to import {module}.{name}: it is {real_module}.{real_name}, which can "
                                f"run code")
    return obj


class GuardedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return _guard(super().find_class, module, name)


def _guarded_pickle_module() -> types.ModuleType:
    """A stand-in for the ``pickle`` module, for loaders that take one (``torch.load(pickle_module=)``)."""
    mod = types.ModuleType("forgeml_guarded_pickle")
    mod.Unpickler = GuardedUnpickler
    mod.load = lambda f, **kw: GuardedUnpickler(f, **kw).load()
    mod.UnpicklingError = pickle.UnpicklingError
    mod.__dict__["Pickler"] = pickle.Pickler
    return mod


def torch_load(path: Path, trust_pickle: bool):
    """A torch.save file: weights-only when that suffices; a whole pickled object only with
    ``trust_pickle`` and after the scan, through the guarded unpickler."""
    import torch

    refuse_unsafe(path, trust_pickle)  # reads opcodes only; refuses before anything is unpickled
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        if not trust_pickle:
            raise InputError(
                f"{path}: a pickled torch object that is not plain weights; loading it can run arbitrary code. "
                f"Run `forgeml scan {path}` and set trust_pickle (`options.trust_pickle`) only if you trust its author"
            ) from e
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False,
                          pickle_module=_guarded_pickle_module())
    except RefusedGlobal as e:
        raise InputError(f"{path}: refused while loading: {e}") from e
    except Exception as e:
        from forgeml.errors import first_line

        raise InputError(f"{path}: torch.load failed: {first_line(e, with_type=True, root=True)}") from e


def joblib_load(path: Path, trust_pickle: bool):
    """A pickle or joblib file (joblib reads both): only after the scan found nothing flagged and the
    caller trusts it, through joblib's unpickler with the same guard on every global."""
    require_safe_pickle(path, trust_pickle)
    from joblib import numpy_pickle as jp

    class Guarded(jp.NumpyUnpickler):
        def find_class(self, module, name):
            return _guard(super().find_class, module, name)

    try:
        with open(path, "rb") as f, jp._validate_fileobject_and_memmap(f, str(path), None) as (fobj, _):
            if isinstance(fobj, str):
                raise InputError(f"{path}: a joblib file from before joblib 0.10 (arrays in side files); "
                                 f"re-save it with a current joblib")
            return Guarded(str(path), fobj, ensure_native_byte_order=True).load()
    except RefusedGlobal as e:
        raise InputError(f"{path}: refused while loading: {e}") from e
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{path}: could not unpickle it: {type(e).__name__}: {e}") from e


def torch_export_load(path: Path, trust_pickle: bool):
    """A ``torch.export`` archive (.pt2). torch.export.load unpickles the archive's sample inputs and
    any pickled weights or constants (``weights_only=False``), so the archive is scanned first: every
    member it would unpickle, nested torch archives included."""
    import torch

    refuse_unsafe(path, trust_pickle)
    return torch.export.load(str(path))
