"""``signature.json``: the model's API contract beside its artifacts — input/output names, dtypes,
shapes with named dynamic dims, and class labels when the source knows them. Stable on purpose:
``report diff`` reads it to decide whether a release breaks its callers (a MAJOR change).
"""

from __future__ import annotations

SCHEMA = "forgeml.signature/1"


def labels_of(source_model) -> list[str] | None:
    """Class names the source model itself carries (sklearn ``classes_``, a transformers config's
    ``id2label`` when not the placeholder ``LABEL_i``); None when it carries none."""
    classes = getattr(source_model, "classes_", None)
    if classes is not None:
        try:
            return [str(c.item() if hasattr(c, "item") else c) for c in classes]
        except TypeError:
            return None
    id2label = getattr(getattr(source_model, "config", None), "id2label", None)
    if isinstance(id2label, dict) and id2label:
        names = [str(id2label[k]) for k in sorted(id2label)]
        if names != [f"LABEL_{i}" for i in range(len(names))]:
            return names
    return None


def signature_record(signature, labels: list[str] | None = None) -> dict:
    def spec(t) -> dict:
        return {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}  # str: a named dynamic dim; None: unknown

    rec = {"schema": SCHEMA, "inputs": [spec(t) for t in signature.inputs],
           "outputs": [spec(t) for t in signature.outputs]}
    if labels is not None:
        rec["labels"] = labels
    return rec
